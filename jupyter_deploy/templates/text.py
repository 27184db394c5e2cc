"""A text model: a unary method and a streaming one. Replace the bodies with your model."""

from typing import Iterator

from jupyter_deploy import ModelClass


class TextModel(ModelClass):
    def load_model(self):
        # Load weights here, once per replica (self.checkpoint_path points at the
        # checkpoints folder when config.yaml has a `checkpoints` section).
        self.prefix = "echo: "

    @ModelClass.method
    def predict(self, text: str, upper: bool = False) -> str:
        """Answer one prompt."""
        out = self.prefix + text
        return out.upper() if upper else out

    @ModelClass.method
    def generate(self, text: str, max_tokens: int = 8) -> Iterator[str]:
        """Stream the answer word by word."""
        for i, word in enumerate((self.prefix + text).split()):
            if i >= max_tokens:
                break
            yield word + " "

    def test(self):
        print("predict('hello world') ->", repr(self.predict("hello world")))
        print("generate('hello world') ->", list(self.generate("hello world")))
        assert self.predict("hi") == "echo: hi"
        assert "".join(self.generate("a b")).split() == ["echo:", "a", "b"]
