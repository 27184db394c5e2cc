"""Small data types that model methods take and return.

They cross the wire with their fields intact (see ``codec``), so a client on
another machine gets back the same objects the model returned::

    from jupyter_deploy import Concept, ModelClass

    class Classifier(ModelClass):
        @ModelClass.method
        def predict(self, text: str) -> list[Concept]:
            return [Concept(id="pos", name="positive", value=0.93)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported only by the models whose types need it
    from PIL.Image import Image


@dataclass
class Concept:
    """A labelled score. ``id`` defaults to ``name`` (as Clarifai's ``Concept(name=..., value=...)``).

    Example::

        Concept(id="cat", name="Cat", value=0.9)
        Concept(name="cat", value=0.9)      # id "cat"
    """

    id: str = ""
    name: str = ""
    value: float = 0.0

    def __post_init__(self) -> None:
        if not self.id and isinstance(self.name, str):
            self.id = self.name


@dataclass
class Region:
    """A box ``(x0, y0, x1, y1)`` with the concepts found in it.

    Example::

        Region(box=(0.1, 0.2, 0.5, 0.9), concepts=[Concept("cat", value=0.8)])
    """

    box: tuple[float, float, float, float]
    concepts: list[Concept] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.box = tuple(float(v) for v in self.box)  # type: ignore[assignment]
        if len(self.box) != 4:
            raise ValueError(f"Region.box needs 4 numbers (x0, y0, x1, y1), got {len(self.box)}")
        # A concept written as a mapping ({"name": "cat", "value": 0.8}) is taken as one: it would
        # otherwise fail only when the replica encodes what the model returned.
        self.concepts = [Concept(**c) if isinstance(c, dict) else c for c in self.concepts]


@dataclass
class Frame:
    """One video frame: an image and its time in seconds.

    Example::

        Frame(image=PIL.Image.new("RGB", (64, 64)), time=1.5)
    """

    image: "Image"
    time: float = 0.0


@dataclass
class Audio:
    """Encoded audio: the file's bytes and its MIME type.

    Example::

        Audio(bytes=Path("hello.wav").read_bytes(), mime="audio/wav")
    """

    bytes: bytes
    mime: str = ""


@dataclass
class Video:
    """Encoded video: the file's bytes and its MIME type.

    Example::

        Video(bytes=Path("clip.mp4").read_bytes(), mime="video/mp4")
    """

    bytes: bytes
    mime: str = ""


