"""The benchmark model (workloads W1, W2, W5 of shared/BENCHMARKS.md)."""

import io
from collections.abc import Iterator

from PIL import Image

from jupyter_deploy import ModelClass

CHUNK = "abcd"  # one 4-byte chunk (W2)


class Bench(ModelClass):
    """Echo, a stream of small chunks, and a JPEG decode: the same work as the floor server."""

    @ModelClass.method
    def echo(self, text: str) -> str:
        """W1: return the text unchanged."""
        return text

    @ModelClass.method
    def chunks(self, n: int) -> Iterator[str]:
        """W2: yield ``n`` strings of 4 bytes."""
        for _ in range(n):
            yield CHUNK

    @ModelClass.method
    def image_size(self, image: bytes) -> dict[str, int]:
        """W5: decode a JPEG with Pillow; return its width and height."""
        img = Image.open(io.BytesIO(image))
        img.load()  # the full decode, as the floor does
        width, height = img.size
        return {"width": width, "height": height}
