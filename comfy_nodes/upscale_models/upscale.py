"""ImageUpscaleWithModel: run an UPSCALE_MODEL (a spandrel ``ImageModelDescriptor``) over images, tiled.

IMAGE is ``[B, H, W, C]`` float in 0..1; each image of the batch is permuted to ``[1, C, H, W]``, moved to the
model's device and dtype and upscaled in 512 px tiles overlapping by 32 px (ComfyUI's defaults; see
:mod:`.tiling` for padding and blending). On out-of-memory the tile size is halved and the batch restarted, down to
64 px; then the node fails with a clear error. Progress is reported per tile (an interrupt takes effect between
tiles). The result is float32, clamped to 0..1, on the executor's device.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from visionatrix.errors import InvalidInput, ModelError
from visionatrix.nodes import context, pixels

from . import tiling

TILE_PX = 512
OVERLAP_PX = 32
MIN_TILE_PX = 64


def tile_runner(model: Any) -> tiling.TileFn:
    """A function running ``model`` on one BCHW tile: padded to its size requirements, the padding cropped off."""
    req, scale = model.size_requirements, model.scale

    def run(tile: torch.Tensor) -> torch.Tensor:
        height, width = tile.shape[-2], tile.shape[-1]
        pad_h, pad_w = tiling.padding_for(height, width, req.minimum, req.multiple_of, req.square)
        if pad_h or pad_w:
            tile = tiling.pad_bottom_right(tile, pad_h, pad_w)
        return model(tile)[..., : height * scale, : width * scale]

    return run


def upscale_batch(model: Any, image: torch.Tensor, *, tile: int, overlap: int = OVERLAP_PX) -> torch.Tensor:
    """Every image of the BHWC batch upscaled by ``model`` with ``tile`` px tiles; progress per tile."""
    ctx = context.current()
    run = tile_runner(model)
    total = image.shape[0] * tiling.count_tiles(image.shape[1], image.shape[2], tile, overlap)
    done = 0

    def on_tile() -> None:
        nonlocal done
        done += 1
        ctx.progress(done, total)

    out: torch.Tensor | None = None
    with torch.inference_mode():  # the executor's device thread is in it already; direct callers may not be
        for index in range(image.shape[0]):
            ctx.check_interrupt()
            pixels = image[index:index + 1].permute(0, 3, 1, 2)
            pixels = pixels.to(device=model.device, dtype=model.dtype, memory_format=torch.contiguous_format)
            upscaled = tiling.upscale_tiled(run, pixels, scale=model.scale, tile=tile, overlap=overlap,
                                            on_tile=on_tile)
            if out is None:  # one BHWC result, each image copied into it once
                out = torch.empty(image.shape[0], upscaled.shape[2], upscaled.shape[3], upscaled.shape[1],
                                  dtype=torch.float32, device=ctx.device)
            out[index].copy_(upscaled[0].permute(1, 2, 0))
        assert out is not None
        return out.clamp_(0, 1)


def _check(model: Any, image: Any) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] == 0:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InvalidInput("image", f"expected an IMAGE shaped [B, H, W, C], got {shape}")
    for name in ("scale", "size_requirements", "input_channels"):
        if not hasattr(model, name):
            raise InvalidInput("upscale_model", f"expected an UPSCALE_MODEL (an image model descriptor), got "
                                                f"{type(model).__name__}")
    if image.shape[-1] != model.input_channels:
        raise InvalidInput("image", f"has {image.shape[-1]} channels; the upscale model takes "
                                    f"{model.input_channels}")
    pixels.check_pixels("image", image.shape[2] * model.scale, image.shape[1] * model.scale, image.shape[0])
    return image


class ImageUpscaleWithModel:
    DESCRIPTION = ("Upscales images with an upscale model (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...), in 512 px "
                   "tiles with feathered 32 px overlaps; tiles shrink when the device runs out of memory.")
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model: Any, image: Any) -> tuple[torch.Tensor]:
        ctx = context.current()
        image = _check(upscale_model, image)
        held = ctx.models.use(upscale_model) if ctx.models is not None else contextlib.nullcontext(upscale_model)
        with held as model:
            tile = TILE_PX
            while True:
                try:
                    return (upscale_batch(model, image, tile=tile),)
                except torch.OutOfMemoryError:
                    pass  # leave the except block first so the failed attempt's tensors can be freed
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
                if tile // 2 < MIN_TILE_PX:
                    raise ModelError(f"out of memory upscaling a {image.shape[2]}x{image.shape[1]} image even in "
                                     f"{tile} px tiles on {model.device}")
                tile //= 2
