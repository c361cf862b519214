"""The transformer (DiT) cases of ``scripts/bench_diffusion.py``: Flux.1 dev and SD3.5 sampled through our nodes
against a direct loop over the same diffusers module, with the same conditioning, noise and sigmas.

The direct loop is what a hand-written diffusers sampler does per Euler step of a flow-matching model: Flux packs
the latent 2 x 2 into tokens with diffusers' own helpers (``FluxPipeline._pack_latents``, ``_unpack_latents``,
``_prepare_latent_image_ids``), calls the transformer at timestep sigma with the distilled guidance, and steps
``x += (sigma_next - sigma) * v``; SD3.5 calls it once on the positive and negative batched together at sigma x
1000 and combines them with CFG before the step. Ours runs the real nodes (loaders, CLIPTextEncode, FluxGuidance,
SamplerCustomAdvanced; KSampler for SD3.5). Both outputs are compared (max abs difference), so the timing compares
the same work.

Cases:
- ``tiny flux dev`` / ``tiny sd3.5 large`` (CPU, in the default run): the tiny test files of ``tests/dit_files.py``
  (UNETLoader + DualCLIPLoader; CheckpointLoaderSimple + TripleCLIPLoader), prompts through their text encoders;
- ``flux-size`` (``--flux-gpu``, CUDA only): FLUX.1-dev's transformer shape (``tests/flux_fixtures.REAL``, 11.9 B
  parameters; ``--flux-layers D,S`` for fewer blocks) with random weights, written once as a BFL-layout bf16
  safetensors file straight from the key shapes (no module is built), loaded through UNETLoader with
  ``weight_dtype`` default (bf16) and fp8_e4m3fn: cold and warm load, weight bytes, steps/s at 1024 x 1024 (4096
  packed tokens, a random T5 context of 512 x 4096 and pooled text of 768) and peak VRAM, against the direct loop
  over the same module (the fp8 one casts its weights to bf16 per layer in both loops).
"""

from __future__ import annotations

import gc
import json
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PROMPT = "a photo of a cat"
NEGATIVE = "blurry"
SEED = 7
FLUX_GUIDANCE = 3.5
SD3_CFG = 4.0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(function: Callable[[], Any], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    function()
    _sync(device)
    return time.perf_counter() - start


def compute_dtype_of(module: torch.nn.Module) -> torch.dtype:
    """The dtype a module computes in: its first floating parameter that is not an fp8 weight."""
    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    return next(p.dtype for p in module.parameters() if p.is_floating_point() and p.dtype not in fp8)


def direct_flux(module: Any, context: torch.Tensor, pooled: torch.Tensor, guidance: float, noise: torch.Tensor,
                latent: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler over a diffusers ``FluxTransformer2DModel`` in the model's latent space (``latent``: the start latent,
    already scaled in); returns the last ``x`` (float32)."""
    from diffusers import FluxPipeline

    device, dtype = next(module.parameters()).device, compute_dtype_of(module)
    b, c, h, w = noise.shape
    sigmas = sigmas.float().to(device)
    x = sigmas[0] * noise.to(device) + (1 - sigmas[0]) * latent.to(device)
    context, pooled = context.to(device, dtype), pooled.to(device, dtype)
    img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, dtype)
    txt_ids = torch.zeros(context.shape[1], 3, device=device, dtype=dtype)
    guidance_in = torch.full((b,), guidance, device=device, dtype=dtype) if module.config.guidance_embeds else None
    with torch.inference_mode():
        for i in range(len(sigmas) - 1):
            tokens = FluxPipeline._pack_latents(x.to(dtype), b, c, h, w)
            v = module(hidden_states=tokens, encoder_hidden_states=context, pooled_projections=pooled,
                       timestep=sigmas[i].expand(b).to(dtype), img_ids=img_ids, txt_ids=txt_ids,
                       guidance=guidance_in, return_dict=False)[0]
            x = x + (sigmas[i + 1] - sigmas[i]) * FluxPipeline._unpack_latents(v, h * 8, w * 8, 8).float()
    return x


def direct_sd3(module: Any, positive: tuple[torch.Tensor, torch.Tensor], negative: tuple[torch.Tensor, torch.Tensor],
               cfg: float, noise: torch.Tensor, latent: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler with CFG over a diffusers ``SD3Transformer2DModel``: positive and negative (context, pooled) in one
    batch of two (two calls when their context lengths differ)."""
    device, dtype = next(module.parameters()).device, compute_dtype_of(module)
    sigmas = sigmas.float().to(device)
    x = sigmas[0] * noise.to(device) + (1 - sigmas[0]) * latent.to(device)
    (cond, pooled), (uncond, upooled) = [(c.to(device, dtype), p.to(device, dtype)) for c, p in (positive, negative)]
    batched = cond.shape == uncond.shape
    if batched:
        context, pooled_in = torch.cat([cond, uncond]), torch.cat([pooled, upooled])
    with torch.inference_mode():
        for i in range(len(sigmas) - 1):
            t = (sigmas[i] * 1000).to(dtype)
            if batched:
                v = module(hidden_states=x.to(dtype).repeat(2, 1, 1, 1), encoder_hidden_states=context,
                           pooled_projections=pooled_in, timestep=t.expand(2), return_dict=False)[0].float()
                v_pos, v_neg = v.chunk(2)
            else:
                v_pos, v_neg = (module(hidden_states=x.to(dtype), encoder_hidden_states=ctx, pooled_projections=p,
                                       timestep=t.expand(1), return_dict=False)[0].float()
                                for ctx, p in ((cond, pooled), (uncond, upooled)))
            x = x + (sigmas[i + 1] - sigmas[i]) * (v_neg + cfg * (v_pos - v_neg))
    return x


class ForwardClock:
    """Seconds spent inside ``module``'s forward (CPU only: on CUDA a forward returns before its kernels finish),
    so a run's time outside the network (our sampler's own per-step work) can be told from the network's."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.seconds = 0.0
        self._start = 0.0
        self._handles = [] if module is None else [
            module.register_forward_pre_hook(lambda *_: self._begin()),
            module.register_forward_hook(lambda *_: self._end())]

    def _begin(self) -> None:
        self._start = time.perf_counter()

    def _end(self) -> None:
        self.seconds += time.perf_counter() - self._start

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def compare(case: str, ours: Callable[[], torch.Tensor], direct: Callable[[], torch.Tensor], steps: int, repeat: int,
            device: str, module: torch.nn.Module | None = None, **extra: Any) -> dict[str, Any]:
    """Per-step seconds of both (one warm-up each, then alternating, medians); ``speed_vs_direct`` = direct s/step
    over ours (ours' steps/s over the direct loop's; 1.0: as fast); the warm-up outputs' max abs difference. With
    ``module`` (the network both call) on the CPU also the per-step milliseconds spent outside its forward, which
    the machine's noise in the network's own time does not blur."""
    ours_out, direct_out = ours(), direct()
    diff = float((ours_out.float().cpu() - direct_out.float().cpu()).abs().max())
    scale = float(direct_out.float().abs().max())
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = ForwardClock(None if cuda else module)
    runs: dict[str, list[float]] = {"ours": [], "direct": [], "ours_outside": [], "direct_outside": []}
    try:
        for _ in range(repeat):
            for name, function in (("ours", ours), ("direct", direct)):
                clock.seconds = 0.0
                seconds = _timed(function, device)
                runs[name].append(seconds / steps)
                runs[name + "_outside"].append((seconds - clock.seconds) / steps)
    finally:
        clock.remove()
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    ours_s, direct_s = statistics.median(runs["ours"]), statistics.median(runs["direct"])
    outside = {} if cuda or module is None else {
        f"{name}_outside_ms_per_step": 1e3 * statistics.median(runs[name + "_outside"]) for name in ("ours", "direct")}
    return {"case": case, "device": device, "latent": list(ours_out.shape), "steps": steps, "repeat": repeat,
            "ours_s_per_step": ours_s, "direct_s_per_step": direct_s, "speed_vs_direct": direct_s / ours_s,
            "ours_steps_per_s": 1 / ours_s, "direct_steps_per_s": 1 / direct_s, "max_abs_diff": diff,
            "output_max_abs": scale, "peak_vram_bytes": peak, **outside, **extra}


def flux_pair(nodes: dict[str, Any], model: Any, cond: list[Any], side: int, steps: int, seed: int = SEED,
              ) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """Ours (SamplerCustomAdvanced: BasicGuider, euler, simple schedule) and the direct loop for a Flux model and a
    FluxGuidance conditioning, an empty latent of ``side`` px."""
    (latent,) = nodes["EmptySD3LatentImage"].generate(side, side, 1)
    (sigmas,) = nodes["BasicScheduler"].get_sigmas(model, "simple", steps, 1.0)
    (sampler,) = nodes["KSamplerSelect"].get_sampler("euler")
    (guider,) = nodes["BasicGuider"].get_guider(model, cond)
    (noise,) = nodes["RandomNoise"].get_noise(seed)
    context, options = cond[0]
    fmt = model.latent_format

    def ours() -> torch.Tensor:
        return nodes["SamplerCustomAdvanced"].sample(noise, guider, sampler, sigmas, latent)[0]["samples"]

    def direct() -> torch.Tensor:
        start = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(seed))
        x = direct_flux(model.unet, context, options["pooled_output"], options["guidance"], start,
                        fmt.process_in(latent["samples"].float()), sigmas)
        return fmt.process_out(x)

    return ours, direct


def sd3_pair(nodes: dict[str, Any], model: Any, positive: list[Any], negative: list[Any], side: int, steps: int,
             seed: int = SEED) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """Ours (KSampler, euler, simple, cfg :data:`SD3_CFG`) and the direct CFG loop for an SD3 model."""
    (latent,) = nodes["EmptySD3LatentImage"].generate(side, side, 1)
    (sigmas,) = nodes["BasicScheduler"].get_sigmas(model, "simple", steps, 1.0)
    fmt = model.latent_format

    def ours() -> torch.Tensor:
        return nodes["KSampler"].sample(model, seed, steps, SD3_CFG, "euler", "simple", positive, negative,
                                        latent)[0]["samples"]

    def direct() -> torch.Tensor:
        start = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(seed))
        pairs = [(c[0][0], c[0][1]["pooled_output"]) for c in (positive, negative)]
        x = direct_sd3(model.unet, pairs[0], pairs[1], SD3_CFG, start, fmt.process_in(latent["samples"].float()),
                       sigmas)
        return fmt.process_out(x)

    return ours, direct


def _context(root: Path, device: str, ram_budget_bytes: int = 4 << 30) -> Any:
    from visionatrix.models.folders import ModelFolders
    from visionatrix.nodes.context import NodeContext
    from visionatrix.nodes.model_manager import ModelManager

    return NodeContext(device=device, model_folders=ModelFolders(root),
                       models=ModelManager(device=device, ram_budget_bytes=ram_budget_bytes, vram_reserve_bytes=0))


def _nodes() -> dict[str, Any]:
    from comfy_nodes.diffusion import NODE_CLASS_MAPPINGS

    return {name: cls() for name, cls in NODE_CLASS_MAPPINGS.items()}


def tiny_dit_cases(device: str, steps: int, repeat: int, *, flux_side: int = 512, sd3_side: int = 256,
                   ) -> list[dict[str, Any]]:
    """The tiny Flux dev (``flux_side`` px: a 64 x 64 latent by default) and SD3.5 large (``sd3_side`` px, at most
    256: its position table) files through the nodes against the direct loops."""
    from tests import dit_files
    from visionatrix.nodes.context import use

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dit_files.write_text_encoders(root)
        dit_files.write_flux(root, "dev")
        dit_files.write_sd3_checkpoint(root, "sd35_large", "sd3.5_large.safetensors")
        with use(_context(root, device)):
            nodes = _nodes()
            (model,) = nodes["UNETLoader"].load_unet("flux1-dev.safetensors", "default")
            (clip,) = nodes["DualCLIPLoader"].load_clip("t5xxl_fp16.safetensors", "clip_l.safetensors", "flux")
            (cond,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
            (cond,) = nodes["FluxGuidance"].append(cond, FLUX_GUIDANCE)
            ours, direct = flux_pair(nodes, model, cond, flux_side, steps)
            results.append(compare(f"tiny flux dev {flux_side}px", ours, direct, steps, repeat, device, model.unet))
            model, _, _ = nodes["CheckpointLoaderSimple"].load_checkpoint("sd3.5_large.safetensors")
            (clip,) = nodes["TripleCLIPLoader"].load_clip("clip_l.safetensors", "clip_g.safetensors",
                                                          "t5xxl_fp16.safetensors")
            (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
            (negative,) = nodes["CLIPTextEncode"].encode(clip, NEGATIVE)
            ours, direct = sd3_pair(nodes, model, positive, negative, sd3_side, steps)
            results.append(compare(f"tiny sd3.5 large {sd3_side}px cfg {SD3_CFG:g}", ours, direct, steps, repeat,
                                   device, model.unet))
    return results


def flux_config(layers: tuple[int, int] | None = None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """FLUX.1-dev's transformer config (``base``: another one), with ``layers`` (double, single) blocks if given."""
    from tests import flux_fixtures

    config = dict(base or flux_fixtures.REAL)
    if layers is not None:
        config["num_layers"], config["num_single_layers"] = layers
    return config


def bfl_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{BFL key: shape}`` of a ``FluxTransformer2DModel`` config (the module built on the meta device only)."""
    from diffusers import FluxTransformer2DModel

    from tests import flux_fixtures

    with torch.device("meta"):
        module = FluxTransformer2DModel(**config)
    return {key: tuple(value.shape) for key, value in flux_fixtures.diffusers_to_bfl(module.state_dict()).items()}


def write_random_bfl(path: Path, shapes: dict[str, tuple[int, ...]], device: str, seed: int = SEED) -> float:
    """A bf16 safetensors file of random tensors by key shape, streamed tensor by tensor (drawn on ``device``):
    matrices ~ N(0, 1/fan_in), norm scales 1, other vectors ~ N(0, 0.02²). Returns the seconds it took."""
    start = time.perf_counter()
    header: dict[str, Any] = {}
    offset = 0
    for key, shape in shapes.items():
        size = 2 * int(torch.Size(shape).numel())
        header[key] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    generator = torch.Generator(device).manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(raw)) + raw)
        for key, shape in shapes.items():
            if key.endswith(".scale"):
                tensor = torch.ones(shape, dtype=torch.bfloat16)
            else:
                std = shape[1] ** -0.5 if len(shape) == 2 else 0.02
                tensor = torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16).mul_(std)
            file.write(tensor.cpu().reshape(-1).view(torch.uint8).numpy().data)
    return time.perf_counter() - start


def flux_size_case(device: str, steps: int, repeat: int, *, layers: tuple[int, int] | None = None,
                   config: dict[str, Any] | None = None, side: int = 1024, text_tokens: int = 512,
                   cache_dir: Path | None = None, weight_dtypes: tuple[str, ...] = ("default", "fp8_e4m3fn"),
                   ) -> list[dict[str, Any]]:
    """A random-weight Flux transformer of FLUX.1-dev's shape (``config``/``layers`` override it) through
    UNETLoader per ``weight_dtype``: load rows (cold, warm, weight bytes) and sampling rows (ours against the direct
    loop at ``side`` px). ``cache_dir`` keeps the file and reuses it on the next run; by default it is temporary."""
    config = flux_config(layers, config)
    shapes = bfl_shapes(config)
    parameters = sum(int(torch.Size(shape).numel()) for shape in shapes.values())
    name = f"flux_random_{config['num_layers']}x{config['num_single_layers']}_{parameters}.safetensors"
    generator = torch.Generator().manual_seed(SEED)
    context = torch.randn(1, text_tokens, config["joint_attention_dim"], generator=generator)
    pooled = torch.randn(1, config["pooled_projection_dim"], generator=generator)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(cache_dir) if cache_dir is not None else Path(tmp)
        path = root / "diffusion_models" / name
        reused = path.exists() and path.stat().st_size == 8 + _header_bytes(path) + 2 * parameters
        made = 0.0 if reused else write_random_bfl(path, shapes, device)
        results: list[dict[str, Any]] = [{"case": "flux-size file (bf16, BFL keys)", "device": device,
                                          "parameters": parameters, "file_bytes": path.stat().st_size,
                                          "make_file_s": made, "reused_file": reused}]
        for weight_dtype in weight_dtypes:
            results += _flux_size_runs(root, name, weight_dtype, context, pooled, device, steps, repeat, side)
    return results


def _header_bytes(path: Path) -> int:
    with open(path, "rb") as file:
        return struct.unpack("<Q", file.read(8))[0]


def _flux_size_runs(root: Path, name: str, weight_dtype: str, context: torch.Tensor, pooled: torch.Tensor,
                    device: str, steps: int, repeat: int, side: int) -> list[dict[str, Any]]:
    """One ``weight_dtype``: a fresh model manager (the cold load is a real one), freed again afterwards."""
    from visionatrix.nodes.context import use

    cuda = device.startswith("cuda")
    ctx = _context(root, device, ram_budget_bytes=64 << 30)
    label = "bf16" if weight_dtype == "default" and cuda else weight_dtype
    try:
        with use(ctx):
            nodes = _nodes()
            loader = nodes["UNETLoader"]
            cold = _timed(lambda: loader.load_unet(name, weight_dtype), device)
            warm = _timed(lambda: loader.load_unet(name, weight_dtype), device)
            (model,) = loader.load_unet(name, weight_dtype)
            module = model.unet
            weights = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
            load = {"case": f"flux-size {label} load", "device": device, "weight_dtype": weight_dtype,
                    "file_bytes": (root / "diffusion_models" / name).stat().st_size, "cold_load_s": cold,
                    "warm_load_s": warm, "weights_bytes": weights,
                    "vram_after_load_bytes": torch.cuda.memory_allocated() if cuda else 0,
                    "linear_weight_dtype": str(module.transformer_blocks[0].attn.to_q.weight.dtype)
                    if len(module.transformer_blocks) else str(module.x_embedder.weight.dtype)}
            (cond,) = nodes["FluxGuidance"].append([[context, {"pooled_output": pooled}]], FLUX_GUIDANCE)
            ours, direct = flux_pair(nodes, model, cond, side, steps)
            run = compare(f"flux-size {label} {side}px", ours, direct, steps, repeat, device, module,
                          weight_dtype=weight_dtype, text_tokens=context.shape[1])
            del model, module, ours, direct
            ctx.models.free()
        return [load, run]
    finally:
        del ctx
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
