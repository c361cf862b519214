"""Neighbourhood filters: Gaussian blur, unsharp-mask sharpening, Sobel edges, pencil sketch and pixelation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import color, sampling, shapes

SHARPEN_GAIN = 10.0
SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_FULL_STEP = 4.0
RADIUS = {"default": 1, "min": 1, "max": 31, "step": 1}
SIGMA = {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}


def gaussian_kernel(radius: int, sigma: float, device, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian weights over ``-radius..radius``."""
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    weights = torch.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def _pad_mode(planes: torch.Tensor, radius: int) -> str:
    """Mirror at the border when the image is large enough for it, else repeat the edge pixel."""
    return "reflect" if radius < min(planes.shape[-2:]) else "replicate"


def gaussian_blur(image: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """Blur every channel of ``[B, H, W, C]`` with a separable Gaussian of ``2 * radius + 1`` taps."""
    planes = image.movedim(-1, 1)
    channels = planes.shape[1]
    kernel = gaussian_kernel(radius, sigma, image.device, image.dtype)
    padded = F.pad(planes, (radius, radius, radius, radius), mode=_pad_mode(planes, radius))
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    both = F.conv2d(rows, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return both.movedim(1, -1)


def sobel_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of ``[B, H, W, 1]`` with 3x3 Sobel kernels (edges repeated at the border)."""
    planes = F.pad(gray.movedim(-1, 1), (1, 1, 1, 1), mode="replicate")
    kernel_x = torch.tensor(SOBEL, dtype=gray.dtype, device=gray.device)
    kernels = torch.stack([kernel_x, kernel_x.T]).unsqueeze(1)
    gradients = F.conv2d(planes, kernels)
    return gradients.pow(2).sum(dim=1, keepdim=True).sqrt().movedim(1, -1)


def color_dodge(base: torch.Tensor, blend: torch.Tensor) -> torch.Tensor:
    """``base / (1 - blend)``, saturating at 1 (a white ``blend`` gives white)."""
    room = 1.0 - blend
    return torch.where(room > 0, base / room.clamp(min=1e-12), torch.ones_like(base)).clamp(0.0, 1.0)


class ImageBlur:
    DESCRIPTION = "Blurs images with a Gaussian kernel of 2 * blur_radius + 1 pixels."
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "blur"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"image": ("IMAGE",), "blur_radius": ("INT", dict(RADIUS)), "sigma": ("FLOAT", dict(SIGMA))}
        }

    def blur(self, image, blur_radius, sigma):
        image = shapes.require_image("image", image)
        return (gaussian_blur(image, blur_radius, sigma).clamp(0.0, 1.0),)


class ImageSharpen:
    DESCRIPTION = "Sharpens images with an unsharp mask: image + 10 * alpha * (image - gaussian blur)."
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "sharpen"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE",),
                "sharpen_radius": ("INT", dict(RADIUS)),
                "sigma": ("FLOAT", dict(SIGMA)),
                "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}),
            }
        }

    def sharpen(self, image, sharpen_radius, sigma, alpha):
        rgb, opacity = color.as_rgb(image)
        detail = rgb - gaussian_blur(rgb, sharpen_radius, sigma)
        return (shapes.join_alpha((rgb + SHARPEN_GAIN * alpha * detail).clamp(0.0, 1.0), opacity),)


class ImageEdgeDetect:
    DESCRIPTION = "Draws edges as the Sobel gradient magnitude of the luma, white on black (a full step gives 1)."
    CATEGORY = "image/filter"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "detect"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        strength = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}
        return {"required": {"image": ("IMAGE",), "strength": ("FLOAT", strength)}}

    def detect(self, image, strength):
        rgb, opacity = color.as_rgb(image)
        edges = (sobel_magnitude(color.luma(rgb)) * (strength / SOBEL_FULL_STEP)).clamp(0.0, 1.0)
        return (shapes.join_alpha(edges.expand_as(rgb).contiguous(), opacity),)


class ImagePencilSketch:
    DESCRIPTION = "Makes a pencil drawing: grayscale, colour-dodged with its own blurred negative."
    CATEGORY = "image/filter"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "sketch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE",),
                "blur_radius": ("INT", {"default": 8, "min": 1, "max": 64, "step": 1}),
                "sigma": ("FLOAT", {"default": 4.0, "min": 0.1, "max": 32.0, "step": 0.1}),
            }
        }

    def sketch(self, image, blur_radius, sigma):
        rgb, opacity = color.as_rgb(image)
        gray = color.luma(rgb)
        blurred_negative = gaussian_blur(1.0 - gray, blur_radius, sigma)
        drawing = color_dodge(gray, blurred_negative)
        return (shapes.join_alpha(drawing.expand_as(rgb).contiguous(), opacity),)


def pixelate(image: torch.Tensor, block_size: int) -> torch.Tensor:
    """Replace each ``block_size`` square (partial ones at the right/bottom too) by its mean colour."""
    height, width = image.shape[1], image.shape[2]
    planes = image.movedim(-1, 1)
    means = F.avg_pool2d(planes, block_size, stride=block_size, ceil_mode=True)
    blocks = means.repeat_interleave(block_size, dim=2).repeat_interleave(block_size, dim=3)
    return blocks[:, :, :height, :width].movedim(1, -1)


class ImagePixelate:
    DESCRIPTION = "Pixelates images into square blocks of their mean colour, optionally only where a mask is set."
    CATEGORY = "image/filter"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "pixelate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE",),
                "block_size": ("INT", {"default": 8, "min": 1, "max": 512, "step": 1}),
            },
            "optional": {"mask": ("MASK",)},
        }

    def pixelate(self, image, block_size, mask=None):
        image = shapes.require_image("image", image)
        blocks = pixelate(image, block_size)
        if mask is None:
            return (blocks,)
        mask = shapes.require_mask("mask", mask)
        mask = sampling.resample_mask(mask, image.shape[2], image.shape[1]).to(image.dtype)
        batch = shapes.common_batch_size({"image": image, "mask": mask})
        image, blocks = image.expand(batch, -1, -1, -1), blocks.expand(batch, -1, -1, -1)
        weight = mask.expand(batch, -1, -1).unsqueeze(-1)
        return (torch.lerp(image, blocks, weight),)


NODE_CLASS_MAPPINGS = {
    "ImageBlur": ImageBlur,
    "ImageSharpen": ImageSharpen,
    "ImageEdgeDetect": ImageEdgeDetect,
    "ImagePencilSketch": ImagePencilSketch,
    "ImagePixelate": ImagePixelate,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageBlur": "Blur Image",
    "ImageSharpen": "Sharpen Image",
    "ImageEdgeDetect": "Detect Edges (Sobel)",
    "ImagePencilSketch": "Pencil Sketch",
    "ImagePixelate": "Pixelate Image",
}
