"""A node pack for the end-to-end tests: E2ESleep passes an image through after sleeping, reporting progress with a
small preview image at each step and stopping early when the run is interrupted (through ComfyUI's
``comfy.utils.ProgressBar`` and ``comfy.model_management.throw_exception_if_processing_interrupted``)."""

import time

import comfy.model_management
import comfy.utils
from PIL import Image


class E2ESleep:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 60.0, "step": 0.1})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sleep"
    CATEGORY = "tests"

    def sleep(self, image, seconds):
        steps = max(1, int(seconds * 20))
        bar = comfy.utils.ProgressBar(steps)
        for step in range(steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(seconds / steps)
            shade = int(255 * (step + 1) / steps)
            bar.update_absolute(step + 1, steps, ("JPEG", Image.new("RGB", (32, 32), (shade, 0, 0)), 64))
        return (image,)


NODE_CLASS_MAPPINGS = {"E2ESleep": E2ESleep}
