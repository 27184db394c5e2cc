"""A streaming model: server streaming and bidirectional. Replace the bodies with your model."""

from typing import Iterator

from jupyter_deploy import ModelClass


class StreamModel(ModelClass):
    def load_model(self):
        self.total = 0.0

    @ModelClass.method
    def generate(self, n: int = 5) -> Iterator[int]:
        """Count from 0 to n - 1."""
        yield from range(n)

    @ModelClass.method
    def stream(self, values: Iterator[float], scale: float = 1.0) -> Iterator[float]:
        """Running sum of the values sent, one output per input."""
        total = 0.0
        for v in values:
            total += v * scale
            yield total

    def test(self):
        print("generate(3) ->", list(self.generate(3)))
        print("stream([1, 2, 3]) ->", list(self.stream(iter([1.0, 2.0, 3.0]))))
        assert list(self.stream(iter([1.0, 2.0]), scale=2.0)) == [2.0, 6.0]
