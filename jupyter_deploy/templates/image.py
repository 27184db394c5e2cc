"""An image model: returns concepts and regions. Replace the bodies with your model."""

from PIL import Image

from jupyter_deploy import Concept, ModelClass, Region


class ImageModel(ModelClass):
    def load_model(self):
        self.labels = ["dark", "bright"]

    @ModelClass.method
    def predict(self, image: Image.Image) -> list[Concept]:
        """Score the image as dark or bright."""
        brightness = sum(image.convert("L").getdata()) / (255 * image.width * image.height)
        return [Concept(id=label, name=label, value=v)
                for label, v in zip(self.labels, (1 - brightness, brightness))]

    @ModelClass.method
    def detect(self, image: Image.Image) -> list[Region]:
        """Return one region covering the image's bounding box of non-black pixels."""
        box = image.convert("L").getbbox() or (0, 0, 0, 0)
        w, h = image.size
        return [Region(box=(box[0] / w, box[1] / h, box[2] / w, box[3] / h),
                       concepts=self.predict(image))]

    def test(self):
        white = Image.new("RGB", (8, 8), "white")
        print("predict(white 8x8) ->", self.predict(white))
        assert self.predict(white)[1].value == 1.0
        assert self.detect(white)[0].box == (0.0, 0.0, 1.0, 1.0)
