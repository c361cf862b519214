"""Nodes that make or arrange whole batches: a solid-colour batch, joining two batches, a contact sheet grid."""

from __future__ import annotations

import math

import torch

from visionatrix.nodes import context

from . import compose, shapes

COLOR = {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}


class EmptyImage:
    DESCRIPTION = "Creates a batch of images filled with one colour given as 0xRRGGBB."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "generate"
    PIXEL_INPUTS = ("width", "height", "batch_size")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        size = {"default": 512, "min": 1, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": ("INT", dict(COLOR)),
            }
        }

    def generate(self, width, height, batch_size, color):
        shapes.check_pixels("width", width, height, batch_size)
        rgb = shapes.rgb_from_int(color, context.current().device)
        return (rgb.expand(batch_size, height, width, shapes.RGB_CHANNELS).contiguous(),)


class ImageBatch:
    DESCRIPTION = "Joins two image batches into one; image2 is resized (center-cropped) to image1's size if needed."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1, image2):
        image1 = shapes.require_image("image1", image1)
        image2 = shapes.require_image("image2", image2)
        channels = max(image1.shape[-1], image2.shape[-1])
        image1 = shapes.match_channels(image1, channels)
        shapes.check_pixels("image2", image1.shape[2], image1.shape[1], image1.shape[0] + image2.shape[0])
        image2 = compose.fit_to(image2, image1, "bilinear")
        return (torch.cat([image1, image2.to(image1.dtype)], dim=0),)


class ImageContactSheet:
    DESCRIPTION = "Lays a batch of images out as one grid image with the given number of columns and spacing."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "arrange"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE",),
                "columns": ("INT", {"default": 4, "min": 1, "max": 256, "step": 1}),
                "spacing": ("INT", {"default": 4, "min": 0, "max": 1024, "step": 1}),
                "background": ("INT", {**COLOR, "default": 0xFFFFFF}),
            }
        }

    def arrange(self, images, columns, spacing, background):
        images = shapes.require_image("images", images)
        count, height, width, channels = images.shape
        columns = min(columns, count)
        rows = math.ceil(count / columns)
        sheet_w, sheet_h = columns * width + (columns - 1) * spacing, rows * height + (rows - 1) * spacing
        shapes.check_pixels("columns", sheet_w, sheet_h)
        fill = shapes.match_channels(shapes.rgb_from_int(background, images.device, images.dtype), channels)
        sheet = fill.expand(1, sheet_h, sheet_w, channels).clone()
        ctx = context.current()
        for index in range(count):
            ctx.progress(index, count)
            top = (index // columns) * (height + spacing)
            left = (index % columns) * (width + spacing)
            sheet[0, top : top + height, left : left + width] = images[index]
        return (sheet,)


NODE_CLASS_MAPPINGS = {
    "EmptyImage": EmptyImage,
    "ImageBatch": ImageBatch,
    "ImageContactSheet": ImageContactSheet,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyImage": "Empty Image",
    "ImageBatch": "Batch Images",
    "ImageContactSheet": "Contact Sheet",
}
