"""VAE: a diffusers ``AutoencoderKL`` turning IMAGEs into raw latents and back, as ComfyUI's VAE does.

Latents are the autoencoder's raw space (ComfyUI's LATENT holds them unscaled; the model's latent format scales them
for sampling). Encoding crops the pixels to a multiple of the VAE's downscale ratio (8) around the centre, keeps the
first three channels, maps 0..1 to -1..1 and takes the posterior's mode (its mean); decoding maps back and clamps to
0..1. Batches run in slices sized for the free memory of the device; the module is held by the model manager
(``ctx.models.use``) while it runs, computes in its own dtype, and a reduced-precision (bf16/fp16) slice that comes
out NaN or infinite is run again with the module in float32 (cast in place and cast back, which is exact for bf16
and fp16 weights). A CUDA out-of-memory error retries the whole call tiled, as ComfyUI does.

Tiled calls follow ComfyUI's ``VAEEncodeTiled`` / ``VAEDecodeTiled``: tiles start every ``tile - overlap`` pixels
(the last one moved back to end at the edge), each tile's result is weighted by linear ramps ``(t + 1) / feather``
on all its sides (``feather`` = the overlap in output units) and the weighted mean is taken; three tilings, tall
(``tile/2 x 2 tile``), wide and square, are averaged so no seam sits in the same place in all three.

Latents come back as float32 on the CPU (ComfyUI's intermediate device; the sampler moves them); IMAGEs as float32
``[B, H, W, 3]`` on the node context's device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.errors import InvalidInput, ModelError
from visionatrix.nodes import context

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

DECODE_BYTES_PER_PIXEL = 2200
"""Working memory of a decode per output pixel and byte of the compute dtype (activations of the widest levels)."""
ENCODE_BYTES_PER_PIXEL = 1800
CPU_BUDGET_BYTES = 4 << 30
"""Working memory a CPU slice may take."""
CUDA_FREE_SHARE = 0.8
DEFAULT_TILE, DEFAULT_OVERLAP = 512, 64
"""ComfyUI's tiled defaults in pixels (also the out-of-memory fallback of encoding; decoding falls back to 512/128)."""
OOM_DECODE_OVERLAP = 128

Run = Callable[["Tensor"], "Tensor"]


@dataclass(frozen=True)
class Vae:
    """ComfyUI's VAE: an ``AutoencoderKL`` (held by the model manager, never changed) and its file's name."""

    module: Module
    name: str = ""

    @property
    def _net(self) -> Any:
        """The module untyped (diffusers' configs and outputs are dynamic)."""
        return self.module

    @property
    def downscale_ratio(self) -> int:
        return 2 ** (len(self._net.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self._net.config.latent_channels)

    def encode(self, pixels: Tensor, *, name: str = "pixels") -> Tensor:
        """IMAGE ``[B, H, W, C]`` (0..1, C >= 3) -> raw latent ``[B, 4, H/8, W/8]`` float32 on the CPU."""
        x = self._pixels(pixels, name)
        try:
            return self._sliced(x, self._encode_fn, ENCODE_BYTES_PER_PIXEL * x.shape[-2] * x.shape[-1],
                                self.latent_channels, torch.device("cpu"))
        except torch.OutOfMemoryError:
            _empty_cuda_cache()
            return self._encode_tiled(x, DEFAULT_TILE, DEFAULT_OVERLAP)

    def decode(self, latent: Tensor, *, name: str = "samples") -> Tensor:
        """Raw latent ``[B, 4, h, w]`` -> IMAGE ``[B, 8h, 8w, 3]`` float32 in 0..1 on the context's device."""
        z = self._latent(latent, name)
        pixels = z.shape[-2] * z.shape[-1] * self.downscale_ratio ** 2
        try:
            out = self._sliced(z, self._decode_fn, DECODE_BYTES_PER_PIXEL * pixels, 3,
                               torch.device(context.current().device))
        except torch.OutOfMemoryError:
            _empty_cuda_cache()
            return self._decode_tiled(z, DEFAULT_TILE, OOM_DECODE_OVERLAP)
        return _to_image(out)

    def encode_tiled(self, pixels: Tensor, tile_size: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, *,
                     name: str = "pixels") -> Tensor:
        """:meth:`encode` in overlapping ``tile_size`` pixel tiles (see the module docstring)."""
        return self._encode_tiled(self._pixels(pixels, name), tile_size, overlap)

    def decode_tiled(self, latent: Tensor, tile_size: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, *,
                     name: str = "samples") -> Tensor:
        """:meth:`decode` in overlapping tiles of ``tile_size`` output pixels; an overlap above a quarter of the
        tile is lowered to a quarter, as ComfyUI's node does."""
        return self._decode_tiled(self._latent(latent, name), tile_size, overlap)

    # -- inputs -----------------------------------------------------------------------------------------------------

    def _pixels(self, pixels: Any, name: str) -> Tensor:
        ratio = self.downscale_ratio
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4:
            raise InvalidInput(name, f"expected an IMAGE [batch, height, width, channels], got {_what(pixels)}")
        if pixels.shape[-1] < 3:
            raise InvalidInput(name, f"an IMAGE with {pixels.shape[-1]} channels; the VAE encodes RGB (3 or more)")
        if pixels.shape[1] < ratio or pixels.shape[2] < ratio or pixels.shape[0] == 0:
            raise InvalidInput(name, f"an image of {pixels.shape[2]}x{pixels.shape[1]} pixels is smaller than the "
                                     f"VAE's {ratio}x{ratio} latent cell")
        return crop_to_multiple(pixels, ratio)[..., :3].movedim(-1, 1)

    def _latent(self, latent: Any, name: str) -> Tensor:
        if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
            raise InvalidInput(name, f"expected a latent [batch, channels, height, width], got {_what(latent)}")
        if latent.shape[1] != self.latent_channels:
            raise InvalidInput(name, f"a latent with {latent.shape[1]} channels does not fit this VAE, which takes "
                                     f"{self.latent_channels} (a latent of another model family?)")
        if latent.shape[0] == 0 or latent.shape[2] == 0 or latent.shape[3] == 0:
            raise InvalidInput(name, f"an empty latent of shape {list(latent.shape)}")
        return latent

    # -- the network ------------------------------------------------------------------------------------------------

    def _encode_fn(self, x: Tensor) -> Tensor:
        return self._net.encode(x * 2.0 - 1.0).latent_dist.mode()

    def _decode_fn(self, z: Tensor) -> Tensor:
        return self._net.decode(z).sample

    @contextlib.contextmanager
    def _held(self) -> Iterator[Callable[[Run, Tensor], Tensor]]:
        """The module held on its device; yields ``run(fn, x)``: ``fn`` on ``x`` in the module's dtype and device,
        once more in float32 when a reduced-precision result is not finite; float32 result."""
        manager = context.current().models
        holder = manager.use(self.module) if manager is not None else contextlib.nullcontext(self.module)
        with holder, torch.inference_mode():
            parameter = next(self.module.parameters())
            device, dtype = parameter.device, parameter.dtype

            def run(fn: Run, x: Tensor) -> Tensor:
                out = fn(x.to(device=device, dtype=dtype))
                if dtype != torch.float32 and not bool(torch.isfinite(out).all()):
                    with _in_float32(self.module):
                        out = fn(x.to(device=device, dtype=torch.float32))
                return out.float()

            yield run

    def _sliced(self, x: Tensor, fn: Run, bytes_per_item: int, out_channels: int, out_device: torch.device,
                ) -> Tensor:
        ctx = context.current()
        out: Tensor | None = None
        with self._held() as run:
            parameter = next(self.module.parameters())
            step = _slice_size(bytes_per_item * parameter.element_size(), parameter.device)
            for start in range(0, x.shape[0], step):
                ctx.check_interrupt()
                result = run(fn, x[start:start + step]).to(out_device)
                if out is None:
                    out = torch.empty((x.shape[0], out_channels, *result.shape[-2:]), dtype=torch.float32,
                                      device=out_device)
                out[start:start + step] = result
        assert out is not None
        return out

    def _encode_tiled(self, x: Tensor, tile_size: int, overlap: int) -> Tensor:
        overlap = _fit_overlap(tile_size, overlap)
        tiles = ((tile_size, tile_size), (tile_size // 2, tile_size * 2), (tile_size * 2, tile_size // 2))
        with self._out_of_memory_named("encoding", x.shape[0], x.shape[-1], x.shape[-2]):
            return self._tiled(x, self._encode_fn, tiles, overlap, 1 / self.downscale_ratio, self.latent_channels,
                               torch.device("cpu"))

    def _decode_tiled(self, z: Tensor, tile_size: int, overlap: int) -> Tensor:
        overlap = _fit_overlap(tile_size, overlap)
        tile, overlap = max(1, tile_size // self.downscale_ratio), overlap // self.downscale_ratio
        tiles = ((tile * 2, tile // 2), (tile // 2, tile * 2), (tile, tile))
        ratio = self.downscale_ratio
        with self._out_of_memory_named("decoding", z.shape[0], z.shape[-1] * ratio, z.shape[-2] * ratio):
            out = self._tiled(z, self._decode_fn, tiles, overlap, ratio, 3, torch.device(context.current().device))
        return _to_image(out)

    @contextlib.contextmanager
    def _out_of_memory_named(self, what: str, batch: int, width: int, height: int) -> Iterator[None]:
        """A CUDA out-of-memory error even in tiles: memory freed, a :class:`ModelError` saying what failed."""
        try:
            yield
        except torch.OutOfMemoryError as exc:
            _empty_cuda_cache()
            named = f" with {self.name}" if self.name else ""
            raise ModelError(f"out of GPU memory while {what} {batch} image(s) of {width}x{height}{named}, even in "
                             "tiles; the memory was freed: try a smaller size or tile size") from exc

    def _tiled(self, x: Tensor, fn: Run, tiles: tuple[tuple[int, int], ...], overlap: int, scale: float,
               out_channels: int, out_device: torch.device) -> Tensor:
        """The mean of the three tilings of ``x`` (``tiles``: (height, width) per tiling)."""
        ctx = context.current()
        tiles = tuple((max(1, th), max(1, tw)) for th, tw in tiles)
        height, width = x.shape[-2], x.shape[-1]
        total = x.shape[0] * sum(len(tile_starts(height, th, overlap)) * len(tile_starts(width, tw, overlap))
                                 for th, tw in tiles)
        done = 0

        def on_tile() -> None:
            nonlocal done
            done += 1
            ctx.progress(done, total)

        with self._held() as run:
            out = torch.zeros((x.shape[0], out_channels, round(height * scale), round(width * scale)),
                              dtype=torch.float32, device=out_device)
            for index in range(x.shape[0]):
                for tile in tiles:
                    ctx.check_interrupt()
                    out[index:index + 1] += tiled_pass(lambda part: run(fn, part).to(out_device),
                                                       x[index:index + 1], tile, overlap, scale, on_tile)
            return out.div_(len(tiles))


def require_latent(name: str, value: Any) -> dict[str, Any]:
    """``value`` when it is a LATENT (a dict whose ``samples`` is a ``[B, C, H, W]`` tensor), else InvalidInput."""
    samples = value.get("samples") if isinstance(value, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        got = f"samples {_what(samples)}" if isinstance(value, dict) else _what(value)
        raise InvalidInput(name, f"expected a LATENT ({{'samples': [batch, channels, height, width]}}), got {got}")
    return value


def crop_to_multiple(pixels: Tensor, multiple: int) -> Tensor:
    """IMAGE ``[B, H, W, C]`` cropped to multiples of ``multiple``, centred (the odd pixel at the end), as ComfyUI."""
    height, width = pixels.shape[1], pixels.shape[2]
    top, left = (height % multiple) // 2, (width % multiple) // 2
    return pixels[:, top:top + height - height % multiple, left:left + width - width % multiple]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles begin along an axis of ``size``: every ``tile - overlap``, the last moved back to the edge."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    return [max(0, min(size - tile, start)) for start in range(0, size - overlap, step)]


def edge_weights(length: int, feather: int, device: torch.device) -> Tensor:
    """Weights along one axis of a tile's output: ``(t + 1) / feather`` on the ``feather`` cells of each side
    (ramps that meet multiply); no ramp when the tile is not longer than ``feather``."""
    weights = torch.ones(length, dtype=torch.float32, device=device)
    if 0 < feather < length:
        ramp = torch.arange(1, feather + 1, dtype=torch.float32, device=device) / feather
        weights[:feather] *= ramp
        weights[length - feather:] *= ramp.flip(0)
    return weights


def tiled_pass(run: Run, x: Tensor, tile: tuple[int, int], overlap: int, scale: float,
               on_tile: Callable[[], None]) -> Tensor:
    """One tiling of ``x`` (``[1, C, H, W]``): ``run`` per tile, results blended by their edge weights."""
    height, width = x.shape[-2], x.shape[-1]
    if height <= tile[0] and width <= tile[1]:
        result = run(x)
        on_tile()
        return result
    out: Tensor | None = None
    weight_sum: Tensor | None = None
    feather = round(overlap * scale)
    for top in tile_starts(height, tile[0], overlap):
        for left in tile_starts(width, tile[1], overlap):
            part = run(x[..., top:top + tile[0], left:left + tile[1]])
            if out is None or weight_sum is None:
                shape = (1, part.shape[1], round(height * scale), round(width * scale))
                out = torch.zeros(shape, dtype=torch.float32, device=part.device)
                weight_sum = torch.zeros(shape, dtype=torch.float32, device=part.device)
            rows = edge_weights(part.shape[-2], feather, part.device)
            cols = edge_weights(part.shape[-1], feather, part.device)
            mask = rows[:, None] * cols[None, :]
            y, x0 = round(top * scale), round(left * scale)
            region = (..., slice(y, y + part.shape[-2]), slice(x0, x0 + part.shape[-1]))
            out[region] += part * mask
            weight_sum[region] += mask
            on_tile()
    assert out is not None and weight_sum is not None
    return out / weight_sum


def _what(value: Any) -> str:
    return f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _fit_overlap(tile_size: int, overlap: int) -> int:
    return tile_size // 4 if tile_size < overlap * 4 else overlap


def _to_image(decoded: Tensor) -> Tensor:
    return ((decoded + 1.0) / 2.0).clamp_(0.0, 1.0).movedim(1, -1).contiguous()


def _slice_size(bytes_per_item: int, device: torch.device) -> int:
    """How many batch items one call may take on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        budget = int(free * CUDA_FREE_SHARE)
    else:
        budget = CPU_BUDGET_BYTES
    return max(1, budget // max(1, bytes_per_item))


@contextlib.contextmanager
def _in_float32(module: Module) -> Iterator[None]:
    """``module`` cast to float32 for the block, then back to its dtype (exact: bf16/fp16 values fit float32)."""
    dtype = next(module.parameters()).dtype
    module.to(torch.float32)
    try:
        yield
    finally:
        module.to(dtype)


def _empty_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
