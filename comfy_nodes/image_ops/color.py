"""Per-pixel colour nodes: invert, grayscale, brightness, contrast, saturation, gamma and hue.

Colour is changed on the RGB channels only; an alpha channel passes through untouched. The factor nodes follow
PIL's ``ImageEnhance``: each blends the image with a degenerate version (black, mean grey, grayscale).
"""

from __future__ import annotations

import torch

from . import shapes

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
FACTOR = {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``[..., 1]`` of an RGB tensor ``[..., 3]`` (the weights of PIL's ``convert("L")``)."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return (rgb * weights).sum(dim=-1, keepdim=True)


def as_rgb(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``image`` and split it into its three colour channels and the alpha channel, if any."""
    image = shapes.require_image("image", image)
    return shapes.split_alpha(shapes.match_channels(image, max(image.shape[-1], shapes.RGB_CHANNELS)))


def blend_toward(rgb: torch.Tensor, degenerate: torch.Tensor, factor: float) -> torch.Tensor:
    """``degenerate + factor * (rgb - degenerate)``, clamped: 0 gives ``degenerate``, 1 the input."""
    return torch.lerp(degenerate.expand_as(rgb), rgb, factor).clamp(0.0, 1.0)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``[..., 3]`` to HSV ``[..., 3]``, every component in 0..1."""
    red, green, blue = rgb.unbind(-1)
    value, argmax = rgb.max(dim=-1)
    chroma = value - rgb.min(dim=-1).values
    safe = chroma.clamp(min=1e-12)
    hue_by_max = torch.stack(
        [((green - blue) / safe) % 6.0, (blue - red) / safe + 2.0, (red - green) / safe + 4.0], dim=-1
    )
    hue = torch.gather(hue_by_max, -1, argmax.unsqueeze(-1)).squeeze(-1) / 6.0
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    saturation = chroma / value.clamp(min=1e-12)
    return torch.stack([hue, saturation, value], dim=-1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV ``[..., 3]`` (components in 0..1) back to RGB ``[..., 3]``."""
    hue, saturation, value = hsv.unbind(-1)
    channels = []
    for offset in (5.0, 3.0, 1.0):
        k = (offset + hue * 6.0) % 6.0
        ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
        channels.append(value - value * saturation * ramp)
    return torch.stack(channels, dim=-1)


class _ColorNode:
    """Shared V1 attributes of the one-image colour nodes; subclasses define ``extra_inputs`` and ``apply``."""

    CATEGORY = "image/adjust"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "adjust"

    @classmethod
    def extra_inputs(cls) -> dict:
        return {}

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), **cls.extra_inputs()}}

    def adjust(self, image, **params):
        rgb, alpha = as_rgb(image)
        return (shapes.join_alpha(self.apply(rgb, **params), alpha),)

    def apply(self, rgb: torch.Tensor, **params) -> torch.Tensor:
        raise NotImplementedError


class ImageInvert(_ColorNode):
    DESCRIPTION = "Inverts the colours of images (1 - value); alpha is kept."
    CATEGORY = "image"

    def apply(self, rgb):
        return 1.0 - rgb


class ImageGrayscale(_ColorNode):
    DESCRIPTION = "Turns images grey using ITU-R 601 luma, keeping three channels."

    def apply(self, rgb):
        return luma(rgb).expand_as(rgb).contiguous()


class ImageAdjustBrightness(_ColorNode):
    DESCRIPTION = "Scales brightness: 0 is black, 1 leaves the image unchanged, 2 doubles every value."

    @classmethod
    def extra_inputs(cls) -> dict:
        return {"brightness": ("FLOAT", dict(FACTOR))}

    def apply(self, rgb, brightness):
        return blend_toward(rgb, torch.zeros_like(rgb), brightness)


class ImageAdjustContrast(_ColorNode):
    DESCRIPTION = "Scales contrast around each image's mean grey: 0 is flat grey, 1 leaves the image unchanged."

    @classmethod
    def extra_inputs(cls) -> dict:
        return {"contrast": ("FLOAT", dict(FACTOR))}

    def apply(self, rgb, contrast):
        mean = luma(rgb).mean(dim=(1, 2), keepdim=True)
        return blend_toward(rgb, mean, contrast)


class ImageAdjustSaturation(_ColorNode):
    DESCRIPTION = "Scales colour saturation: 0 is grayscale, 1 leaves the image unchanged, above 1 intensifies."

    @classmethod
    def extra_inputs(cls) -> dict:
        return {"saturation": ("FLOAT", dict(FACTOR))}

    def apply(self, rgb, saturation):
        return blend_toward(rgb, luma(rgb), saturation)


class ImageAdjustGamma(_ColorNode):
    DESCRIPTION = "Applies gamma correction, value ** (1 / gamma): above 1 brightens mid-tones, below 1 darkens."

    @classmethod
    def extra_inputs(cls) -> dict:
        return {"gamma": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 10.0, "step": 0.01})}

    def apply(self, rgb, gamma):
        return rgb.clamp(0.0, 1.0) ** (1.0 / gamma)


class ImageAdjustHue(_ColorNode):
    DESCRIPTION = "Rotates the hue of every pixel by the given number of degrees, keeping saturation and value."

    @classmethod
    def extra_inputs(cls) -> dict:
        return {"hue_shift": ("FLOAT", {"default": 0.0, "min": -180.0, "max": 180.0, "step": 1.0})}

    def apply(self, rgb, hue_shift):
        hsv = rgb_to_hsv(rgb.clamp(0.0, 1.0))
        hue = (hsv[..., 0] + hue_shift / 360.0) % 1.0
        return hsv_to_rgb(torch.stack([hue, hsv[..., 1], hsv[..., 2]], dim=-1))


NODE_CLASS_MAPPINGS = {
    "ImageInvert": ImageInvert,
    "ImageGrayscale": ImageGrayscale,
    "ImageAdjustBrightness": ImageAdjustBrightness,
    "ImageAdjustContrast": ImageAdjustContrast,
    "ImageAdjustSaturation": ImageAdjustSaturation,
    "ImageAdjustGamma": ImageAdjustGamma,
    "ImageAdjustHue": ImageAdjustHue,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageInvert": "Invert Image",
    "ImageGrayscale": "Grayscale Image",
    "ImageAdjustBrightness": "Adjust Brightness",
    "ImageAdjustContrast": "Adjust Contrast",
    "ImageAdjustSaturation": "Adjust Saturation",
    "ImageAdjustGamma": "Adjust Gamma",
    "ImageAdjustHue": "Adjust Hue",
}
