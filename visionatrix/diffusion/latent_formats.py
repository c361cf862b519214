"""How a family's VAE latents relate to what its diffusion model samples, and a cheap latent -> RGB preview.

ComfyUI's LATENT holds raw VAE latents; the sampler scales them in (``process_in``) before noising and back out
(``process_out``) at the end. SD1/SD2 multiply by 0.18215, SDXL by 0.13025, SD3 and Flux (16 channels) subtract
a shift first (0.0609 then x 1.5305; 0.1159 then x 0.3611); Playground 2.5 (EDM) normalises by its
per-channel latent mean and standard deviation, then multiplies by 0.5.

The preview is a linear projection of the 4 latent channels to RGB (per-family approximation factors, as published
by the community for SD1.5 and SDXL), so a preview per step costs one small matrix product and no VAE decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

SD15_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
SDXL_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188))
SDXL_RGB_BIAS = (0.1084, -0.0175, -0.0011)
PREVIEW_MAX_SIDE = 512


@dataclass(frozen=True)
class LatentFormat:
    """A family's latent space: ``channels``, the VAE's ``downscale``, the sampler's scaling and preview factors."""

    name: str
    scale_factor: float
    channels: int = 4
    downscale: int = 8
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    rgb_factors: Sequence[Sequence[float]] = SD15_RGB
    rgb_bias: Sequence[float] = (0.0, 0.0, 0.0)
    preview_scale: float | None = None
    """Raw latents times this are what the RGB factors were fitted on; None: the sampled space (``process_in``)."""

    shift_factor: float = 0.0
    """Subtracted before scaling (SD3, Flux)."""

    def process_in(self, latent: Tensor) -> Tensor:
        """A VAE latent as the diffusion model samples it."""
        if self.mean is None or self.std is None:
            return (latent - self.shift_factor) * self.scale_factor
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: Tensor) -> Tensor:
        """A sampled latent back in the VAE's space."""
        if self.mean is None or self.std is None:
            return latent / self.scale_factor + self.shift_factor
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        assert self.mean is not None and self.std is not None
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).reshape(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).reshape(shape)
        return mean, std

    def preview_rgb(self, sampled: Tensor) -> Tensor:
        """``[H, W, 3]`` uint8 on the CPU of the first item of a sampled (``process_in`` space) latent batch."""
        first = sampled[:1].float()
        factors = torch.tensor(self.rgb_factors, dtype=torch.float32, device=first.device)
        bias = torch.tensor(self.rgb_bias, dtype=torch.float32, device=first.device)
        channels = min(first.shape[1], factors.shape[0])
        if self.preview_scale is None:  # the factors were fitted on the sampled space itself
            latent = first[0, :channels]
        else:
            latent = self.process_out(first)[0, :channels] * self.preview_scale
        rgb = torch.einsum("chw,cr->hwr", latent, factors[:channels]) + bias
        return ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).to(torch.uint8).cpu()

    def preview(self, sampled: Tensor) -> Any:
        """The progress preview ComfyUI's hooks take: ``("JPEG", PIL image, max side)``."""
        from PIL import Image

        image = Image.fromarray(self.preview_rgb(sampled).numpy())
        return ("JPEG", image, PREVIEW_MAX_SIDE)


SD3_RGB = ((-0.0922, -0.0039, 0.0195), (0.0311, 0.0469, 0.0568), (0.0418, 0.0329, 0.0202),
           (0.0124, 0.0181, 0.0164), (0.0453, 0.0563, 0.0661), (0.0149, 0.0293, 0.0408),
           (-0.0011, 0.0206, 0.0320), (-0.0218, 0.0103, 0.0302), (-0.0028, 0.0089, 0.0161),
           (0.0191, 0.0155, 0.0067), (-0.0206, -0.0078, 0.0014), (-0.0040, 0.0130, 0.0301),
           (-0.0017, -0.0120, -0.0228), (0.0171, 0.0280, 0.0420), (0.0041, 0.0056, 0.0118),
           (-0.0032, 0.0024, 0.0115))
FLUX_RGB = ((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
            (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
            (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
            (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
            (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
            (-0.1262, -0.0982, -0.0778))
FLUX_RGB_BIAS = (-0.0329, -0.0718, -0.0851)

SD1 = LatentFormat("sd1", 0.18215)
SDXL = LatentFormat("sdxl", 0.13025, rgb_factors=SDXL_RGB, rgb_bias=SDXL_RGB_BIAS)


SD3 = LatentFormat("sd3", 1.5305, channels=16, shift_factor=0.0609, rgb_factors=SD3_RGB)
FLUX = LatentFormat("flux", 0.3611, channels=16, shift_factor=0.1159, rgb_factors=FLUX_RGB, rgb_bias=FLUX_RGB_BIAS)
"""SD3/SD3.5 and Flux sample the 16-channel VAE's latents shifted and scaled (AuraFlow, PixArt and HunyuanDiT use
SDXL's 4-channel VAE and latent space)."""


def playground_edm(mean: Sequence[float], std: Sequence[float]) -> LatentFormat:
    """Playground 2.5's latent space: its per-channel statistics, scale 0.5."""
    return LatentFormat("playground_edm", 0.5, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                        rgb_factors=SDXL_RGB, rgb_bias=SDXL_RGB_BIAS, preview_scale=SDXL.scale_factor)
