"""CONDITIONING entries made ready for the network at one latent size: context, SDXL vectors, area, mask, range.

ComfyUI's CONDITIONING is a list of ``[tensor, options]``. For each entry this computes what every step needs:
the text context, SDXL's added conditioning (pooled text plus the size/crop numbers: base ``[height, width, crop_h,
crop_w, target_height, target_width]``, refiner ``[height, width, crop_h, crop_w, aesthetic_score]``; absent sizes
are the latent's size in pixels, as ComfyUI fills them), the area in latent cells with its edge feathering, the
mask, the strength, the sigma range from ``start_percent``/``end_percent``, the ControlNet chain and, for 9-channel
inpainting models, the mask and masked-image latent concatenated to the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.errors import InvalidInput

FEATHER = 8
"""Latent cells over which an area's inner edges fade in (ComfyUI's area blending)."""
FLUX_DEFAULT_GUIDANCE = 3.5
"""The guidance a Flux dev model gets when no FluxGuidance set one (ComfyUI's default)."""
POSITIVE_SCORE, NEGATIVE_SCORE = 6.0, 2.5
"""The refiner's default aesthetic scores."""


@dataclass
class PreparedCond:
    context: Tensor
    """``[1, tokens, width]``"""
    added: dict[str, Tensor] | None
    """SDXL: ``text_embeds`` ``[1, pooled]`` and ``time_ids`` ``[1, 6 or 5]``"""
    area: tuple[int, int, int, int] | None
    """``(h, w, y, x)`` in latent cells; None: the whole latent"""
    weight: Tensor | None
    """Per-cell weight over the area ``[1, 1, h, w]`` (mask times feathering); None: 1 everywhere"""
    strength: float
    start_sigma: float
    end_sigma: float
    control: Any
    concat: Tensor | None
    """Channels appended to the network input over the whole latent ``[B, extra, H, W]`` (inpainting models)"""
    refs: tuple[Tensor, ...] = ()
    """Reference latents in the sampled space (Flux Kontext's ``reference_latents``)"""

    def active(self, sigma: float) -> bool:
        return self.end_sigma <= sigma <= self.start_sigma

    def crop(self, tensor: Tensor) -> Tensor:
        if self.area is None:
            return tensor
        h, w, y, x = self.area
        return tensor[..., y:y + h, x:x + w]


def prepare(conditioning: Sequence[Any], model: DiffusionModel, latent: Tensor, *, name: str,
            denoise_mask: Tensor | None = None, device: Any = None) -> list[PreparedCond]:
    """Every entry of ``conditioning`` (input ``name``) for sampling ``latent`` (``[B, C, H, W]``, the sampled
    space) with ``model``; problems name the input."""
    if not isinstance(conditioning, list | tuple):
        raise InvalidInput(name, "expected CONDITIONING (a list of [tensor, options]), got "
                                 f"{type(conditioning).__name__}")
    device = latent.device if device is None else device
    prepared = [_one(entry, model, latent, name, denoise_mask, device) for entry in conditioning]
    if not prepared:
        raise InvalidInput(name, "the conditioning is empty")
    return prepared


def _one(entry: Any, model: DiffusionModel, latent: Tensor, name: str, denoise_mask: Tensor | None,
         device: Any) -> PreparedCond:
    if not isinstance(entry, list | tuple) or len(entry) != 2 or not isinstance(entry[0], Tensor):
        raise InvalidInput(name, "each conditioning entry must be [tensor, options]")
    cond, options = entry[0], dict(entry[1] or {})
    if cond.ndim != 3 or cond.shape[-1] != model.context_width:
        raise InvalidInput(name, f"conditioning of width {cond.shape[-1] if cond.ndim else '?'} does not fit this "
                                 f"{model.family} model, which takes text conditioning {model.context_width} wide "
                                 "(a CLIP from another checkpoint family?)")
    _, _, height, width = latent.shape
    area = _area(options.get("area"), height, width, name)
    mask = options.get("mask")
    weight: Tensor | None = None
    if mask is not None:
        mask = _latent_mask(mask, height, width, device) * float(options.get("mask_strength", 1.0))
        if options.get("set_area_to_bounds"):
            area = _bounds(mask)
        weight = mask if area is None else mask[..., area[2]:area[2] + area[0], area[3]:area[3] + area[1]]
    if area is not None:
        feather = _feathering(area, height, width, device)
        weight = feather if weight is None else weight * feather
    ms = model.model_sampling
    return PreparedCond(
        context=cond.to(device=device, dtype=torch.float32), added=_added(model, cond, options, height, width,
                                                                         name, device),
        area=area, weight=weight, strength=float(options.get("strength", 1.0)),
        start_sigma=ms.percent_to_sigma(float(options.get("start_percent", 0.0))),
        end_sigma=ms.percent_to_sigma(float(options.get("end_percent", 1.0))),
        control=options.get("control"), concat=_concat(model, options, latent, denoise_mask, device),
        refs=_refs(model, options.get("reference_latents"), name, device))


def _added(model: DiffusionModel, cond: Tensor, options: dict[str, Any], height: int, width: int, name: str,
           device: Any) -> dict[str, Tensor] | None:
    if model.family in (Family.FLUX, Family.SD3):
        return _pooled_and_guidance(model, options, name, device)
    if model.family is Family.HUNYUAN_DIT:
        return _hunyuan(options, name, device)
    if not model.is_sdxl:
        return None
    pooled = options.get("pooled_output")
    expected = int(model.unet.config.projection_class_embeddings_input_dim) - model.time_ids_count * int(
        model.unet.config.addition_time_embed_dim)
    if pooled is None:
        raise InvalidInput(name, f"this {model.family} model needs a pooled text embedding: encode the prompt with "
                                 "the checkpoint's CLIP (SDXL's OpenCLIP bigG)")
    if pooled.shape[-1] != expected:
        raise InvalidInput(name, f"pooled output of width {pooled.shape[-1]} does not fit this model ({expected})")
    px_h, px_w = height * 8, width * 8
    h, w = int(options.get("height", px_h)), int(options.get("width", px_w))
    numbers = [h, w, int(options.get("crop_h", 0)), int(options.get("crop_w", 0))]
    if model.time_ids_count == 6:
        numbers += [int(options.get("target_height", h)), int(options.get("target_width", w))]
    else:
        default = NEGATIVE_SCORE if name == "negative" else POSITIVE_SCORE
        numbers.append(float(options.get("aesthetic_score", default)))
    return {"text_embeds": pooled.reshape(1, -1).to(device=device, dtype=torch.float32),
            "time_ids": torch.tensor([numbers], dtype=torch.float32, device=device)}


def _pooled_and_guidance(model: DiffusionModel, options: dict[str, Any], name: str, device: Any,
                         ) -> dict[str, Tensor]:
    """Flux and SD3: the pooled text ``[1, P]``; Flux dev/Kontext/Fill also the guidance (FluxGuidance's, else 3.5,
    ComfyUI's default)."""
    pooled = options.get("pooled_output")
    expected = int(model.unet.config.pooled_projection_dim)
    if pooled is None:
        encoders = "CLIP-L" if model.family is Family.FLUX else "CLIP-L and CLIP-G"
        raise InvalidInput(name, f"this {model.family} model needs a pooled text embedding: encode the prompt with "
                                 f"a {model.family} CLIP ({encoders} beside T5)")
    if pooled.shape[-1] != expected:
        raise InvalidInput(name, f"pooled output of width {pooled.shape[-1]} does not fit this {model.family} model "
                                 f"({expected})")
    added = {"pooled": pooled.reshape(1, -1).to(device=device, dtype=torch.float32)}
    if model.family is Family.FLUX and model.unet.config.guidance_embeds:
        guidance = float(options.get("guidance", FLUX_DEFAULT_GUIDANCE))
        added["guidance"] = torch.tensor([guidance], dtype=torch.float32, device=device)
    return added


HUNYUAN_OPTIONS = {"attention_mask": "text_embedding_mask", "conditioning_mt5xl": "encoder_hidden_states_t5",
                   "attention_mask_mt5xl": "text_embedding_mask_t5"}
"""HunyuanDiT's conditioning options (ComfyUI's names) -> what its network takes."""


def _hunyuan(options: dict[str, Any], name: str, device: Any) -> dict[str, Tensor]:
    missing = [key for key in HUNYUAN_OPTIONS if not isinstance(options.get(key), Tensor)]
    if missing:
        raise InvalidInput(name, f"this HunyuanDiT model needs its text encoders' masks and mT5 tokens "
                                 f"({', '.join(missing)} missing): encode the prompt with the checkpoint's CLIP")
    return {ours: options[key].to(device) for key, ours in HUNYUAN_OPTIONS.items()}


def _refs(model: DiffusionModel, refs: Any, name: str, device: Any) -> tuple[Tensor, ...]:
    if not refs:
        return ()
    if model.family is not Family.FLUX:
        raise InvalidInput(name, f"reference latents (ReferenceLatent) condition Flux Kontext models; this is a "
                                 f"{model.family} model")
    found = []
    for ref in refs:
        if not isinstance(ref, Tensor) or ref.ndim != 4 or ref.shape[1] != model.latent_format.channels:
            raise InvalidInput(name, f"a reference latent must be a [B, {model.latent_format.channels}, H, W] latent "
                                     "from this model's VAE")
        found.append(model.latent_format.process_in(ref.float().to(device)))
    return tuple(found)


def _area(area: Any, height: int, width: int, name: str) -> tuple[int, int, int, int] | None:
    if area is None:
        return None
    try:
        if area[0] == "percentage":
            h, w = max(1, round(float(area[1]) * height)), max(1, round(float(area[2]) * width))
            y, x = round(float(area[3]) * height), round(float(area[4]) * width)
        else:
            h, w, y, x = (int(v) for v in area[:4])
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidInput(name, f"invalid area {area!r}: expected (h, w, y, x)") from exc
    y, x = min(max(y, 0), height - 1), min(max(x, 0), width - 1)
    h, w = max(1, min(h, height - y)), max(1, min(w, width - x))
    return None if (h, w, y, x) == (height, width, 0, 0) else (h, w, y, x)


def _latent_mask(mask: Tensor, height: int, width: int, device: Any) -> Tensor:
    m = mask.float().to(device)
    m = m.reshape(1, 1, *m.shape[-2:]) if m.ndim <= 3 else m[:1, :1]
    if m.shape[-2:] != (height, width):
        m = F.interpolate(m, size=(height, width), mode="bilinear", align_corners=False)
    return m


def _bounds(mask: Tensor) -> tuple[int, int, int, int] | None:
    nonzero = torch.nonzero(mask[0, 0] > 0)
    if nonzero.numel() == 0:
        return None
    (y0, x0), (y1, x1) = nonzero.min(0).values.tolist(), nonzero.max(0).values.tolist()
    return (y1 - y0 + 1, x1 - x0 + 1, y0, x0)


def _feathering(area: tuple[int, int, int, int], height: int, width: int, device: Any) -> Tensor:
    """1 inside the area, fading in over FEATHER cells at each edge that is not the latent's border."""
    h, w, y, x = area
    weight = torch.ones(1, 1, h, w, device=device)
    ramp = lambda n: (torch.arange(min(FEATHER, n), device=device, dtype=torch.float32) + 1) / FEATHER  # noqa: E731
    if y > 0:
        r = ramp(h)
        weight[..., : len(r), :] *= r[:, None]
    if y + h < height:
        r = ramp(h)
        weight[..., h - len(r):, :] *= r.flip(0)[:, None]
    if x > 0:
        r = ramp(w)
        weight[..., :, : len(r)] *= r
    if x + w < width:
        r = ramp(w)
        weight[..., :, w - len(r):] *= r.flip(0)
    return weight


def _concat(model: DiffusionModel, options: dict[str, Any], latent: Tensor, denoise_mask: Tensor | None,
            device: Any) -> Tensor | None:
    """Inpainting models (9 input channels): ``[mask, masked-image latent]`` appended to the input."""
    extra = model.in_channels - latent.shape[1]
    if extra <= 0:
        return None
    if model.family is Family.FLUX:
        return _flux_concat(model, options, latent, denoise_mask, device, extra)
    batch, _, height, width = latent.shape
    image = options.get("concat_latent_image")
    mask = options.get("concat_mask", denoise_mask)
    if image is None:
        image = torch.zeros_like(latent)
    else:
        image = model.latent_format.process_in(image.float().to(device))
        if image.shape[-2:] != (height, width):
            image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
    if mask is None:
        mask = torch.ones(1, 1, height, width, device=device)
    else:
        mask = _latent_mask(mask, height, width, device).round()
    image = _to_batch(image, batch)
    mask = _to_batch(mask, batch)
    concat = torch.cat([mask, image], dim=1)
    if concat.shape[1] != extra:
        raise InvalidInput("model", f"this inpainting model takes {extra} extra input channels, the conditioning "
                                    f"gives {concat.shape[1]}")
    return concat


def _flux_concat(model: DiffusionModel, options: dict[str, Any], latent: Tensor, denoise_mask: Tensor | None,
                 device: Any, extra: int) -> Tensor:
    """Flux Fill: the masked image's latent (sampled space) then the pixel mask folded 8 x 8 into 64 channels per
    latent cell (ComfyUI's and Black Forest Labs' order); no image: zeros, no mask: everything repainted."""
    batch, channels, height, width = latent.shape
    image = options.get("concat_latent_image")
    if image is None:
        image = torch.zeros_like(latent)
    else:
        image = image.float().to(device)
        if image.shape[-2:] != (height, width):
            image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
        image = model.latent_format.process_in(image)
    mask = options.get("concat_mask", denoise_mask)
    if mask is None:
        mask = torch.ones(1, 1, height * 8, width * 8, device=device)
    else:
        m = mask.float().to(device)
        m = m.reshape(-1, 1, *m.shape[-2:]) if m.ndim <= 3 else m.mean(dim=1, keepdim=True)
        mask = F.interpolate(m, size=(height * 8, width * 8), mode="bilinear", align_corners=False) \
            if m.shape[-2:] != (height * 8, width * 8) else m
    mask = mask.view(mask.shape[0], height, 8, width, 8).permute(0, 2, 4, 1, 3).reshape(
        mask.shape[0], 64, height, width)
    concat = torch.cat([_to_batch(image, batch), _to_batch(mask, batch)], dim=1)
    if concat.shape[1] != extra:
        raise InvalidInput("model", f"this Flux Fill model takes {extra} extra input channels, the conditioning "
                                    f"gives {concat.shape[1]} ({channels}-channel latents)")
    return concat


def _to_batch(tensor: Tensor, batch: int) -> Tensor:
    if tensor.shape[0] == batch:
        return tensor
    reps = -(-batch // tensor.shape[0])
    return tensor.repeat(reps, *([1] * (tensor.ndim - 1)))[:batch]
