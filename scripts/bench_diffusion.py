#!/usr/bin/env python
"""Diffusion benchmark: seconds per sampling step of our KSampler against a direct loop over the same diffusers UNet
with the same inputs, and model load times.

The direct loop is what a hand-written diffusers sampler does per Euler step: one UNet call on the positive and
negative conditioning batched together (the input scaled by ``1/sqrt(sigma^2+1)``), classifier-free guidance, the
Euler update. Ours is the ``KSampler`` node (euler, normal schedule, the same cfg): conditioning preparation, the
batched evaluation, progress and the latent preview per step included. Both run on the model the model manager
holds, alternating, median of ``--repeat`` runs. Goal: ours >= 0.95 of the direct loop's speed.

Cases:
- ``tiny`` (default on the CPU): the tiny SD1.5 and SDXL test checkpoints (``tests/diffusion_fixtures.py``),
  prompts through their CLIPs, latents of ``--tiny-size`` px;
- ``sdxl`` (``--sdxl``, meant for a GPU): a random-weight UNet with SDXL's published shape (2.6 B parameters),
  written as a UNet-only LDM file in fp16 and loaded through the model manager (cold: build + move to the device;
  warm: a cache hit), 1024 x 1024 px, conditioning tensors of SDXL's widths; peak VRAM of the sampling runs;
- ``sdxl checkpoint`` (``--sdxl-checkpoint``, a GPU case): a whole SDXL-shaped single-file checkpoint (UNet, VAE,
  CLIP-L, OpenCLIP bigG; random weights, fp16, LDM keys) through ``CheckpointLoaderSimple`` (cold, warm), then text
  to image at 1024 x 1024 (two prompts, EmptyLatentImage, KSampler, VAEDecode in the VAE's bf16): seconds and peak
  VRAM, and whether the decoded image is finite.

- ``tiny flux dev`` / ``tiny sd3.5`` (default; ``--skip-dit`` leaves them out) and ``flux-size`` (``--flux-gpu``,
  CUDA only; ``--flux-layers D,S``, ``--flux-cache DIR``): the transformer families against a direct diffusers loop,
  see ``scripts/bench_diffusion_dit.py``.

Prints a table and writes JSON (default ``bench-results/bench_diffusion.json``). Run:
``.venv/bin/python scripts/bench_diffusion.py [--device cpu|cuda] [--steps N] [--repeat N] [--sdxl] [--skip-tiny]
[--skip-dit] [--flux-gpu [--flux-layers D,S] [--flux-cache DIR]]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple  # noqa: E402
from comfy_nodes.diffusion.sampling_nodes import KSampler  # noqa: E402
from comfy_nodes.diffusion.text_nodes import CLIPTextEncode  # noqa: E402
from scripts import bench_diffusion_dit  # noqa: E402
from tests import diffusion_fixtures  # noqa: E402
from visionatrix.diffusion import loading  # noqa: E402
from visionatrix.diffusion.model import DiffusionModel  # noqa: E402
from visionatrix.diffusion.sampling import schedules  # noqa: E402
from visionatrix.models.folders import ModelFolders  # noqa: E402
from visionatrix.nodes.context import NodeContext, use  # noqa: E402
from visionatrix.nodes.model_manager import ModelManager  # noqa: E402

CFG = 7.0
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280), "attention_head_dim": (5, 10, 20),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10), "use_linear_projection": True, "cross_attention_dim": 2048,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816,
}
"""SDXL 1.0 base's published UNet configuration."""


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    function()
    sync(device)
    return time.perf_counter() - start


def direct_loop(model: DiffusionModel, positive: list[Any], negative: list[Any], latent: torch.Tensor, steps: int,
                seed: int) -> torch.Tensor:
    """A plain diffusers Euler loop over ``model.unet``: the reference our KSampler is timed against."""
    unet = model.unet
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype
    ms = model.model_sampling
    sigmas = schedules.sigmas("normal", ms, steps).to(device)
    context = torch.cat([positive[0][0], negative[0][0]]).to(device, dtype)
    added = None
    if model.is_sdxl:
        size = [latent.shape[2] * 8, latent.shape[3] * 8]
        pooled = torch.cat([positive[0][1]["pooled_output"], negative[0][1]["pooled_output"]])
        added = {"text_embeds": pooled.to(device, dtype),
                 "time_ids": torch.tensor([[*size, 0, 0, *size]] * 2, device=device, dtype=dtype)}
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    x = noise * (1 + sigmas[0] ** 2) ** 0.5
    with torch.inference_mode():
        for i in range(steps):
            sigma = sigmas[i]
            x_in = (x / (sigma**2 + 1) ** 0.5).repeat(2, 1, 1, 1).to(dtype)
            t = ms.timestep(sigma.reshape(1)).expand(2)
            eps = unet(x_in, t, encoder_hidden_states=context, added_cond_kwargs=added, return_dict=False)[0].float()
            d_pos, d_neg = (x - eps * sigma).chunk(2)
            denoised = d_neg + (d_pos - d_neg) * CFG
            x = x + (x - denoised) / sigma * (sigmas[i + 1] - sigma)
    return x


def compare(name: str, model: DiffusionModel, positive: list[Any], negative: list[Any], latent: torch.Tensor,
            steps: int, repeat: int, device: str) -> dict[str, Any]:
    """Per-step seconds of both, alternating runs (one warm-up each); ratio = direct / ours (1.0: as fast)."""
    ours_runs, direct_runs = [], []
    node = KSampler()
    latent_dict = {"samples": latent}
    peak = 0

    def ours() -> None:
        node.sample(model, 1, steps, CFG, "euler", "normal", positive, negative, latent_dict)

    def direct() -> None:
        direct_loop(model, positive, negative, latent, steps, 1)

    ours()
    direct()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeat):
        ours_runs.append(timed(ours, device) / steps)
        direct_runs.append(timed(direct, device) / steps)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
    ours_s, direct_s = statistics.median(ours_runs), statistics.median(direct_runs)
    return {"case": name, "device": device, "latent": list(latent.shape), "steps": steps,
            "ours_s_per_step": ours_s, "direct_s_per_step": direct_s, "speed_vs_direct": direct_s / ours_s,
            "ours_steps_per_s": 1 / ours_s, "direct_steps_per_s": 1 / direct_s, "peak_vram_bytes": peak}


def tiny_cases(device: str, steps: int, repeat: int, size: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in ("sd15", "sdxl"):
            diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint(kind), root / "checkpoints")
        ctx = NodeContext(device=device, model_folders=ModelFolders(root),
                          models=ModelManager(device=device, ram_budget_bytes=4 << 30, vram_reserve_bytes=0))
        with use(ctx):
            for kind in ("sd15", "sdxl"):
                model, clip, _ = CheckpointLoaderSimple().load_checkpoint(f"{kind}.safetensors")
                (positive,) = CLIPTextEncode().encode(clip, "a photo of a cat, (best quality:1.2)")
                (negative,) = CLIPTextEncode().encode(clip, "blurry")
                latent = torch.zeros(1, 4, size // 8, size // 8)
                results.append(compare(f"tiny {kind} {size}px", model, positive, negative, latent, steps, repeat,
                                       device))
    return results


def sdxl_case(device: str, steps: int, repeat: int) -> list[dict[str, Any]]:
    """SDXL's real UNet shape with random weights (fp16 file), 1024 x 1024, load times and per-step speed."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "diffusion_models").mkdir()
        path = root / "diffusion_models" / "sdxl_unet_random.safetensors"
        start = time.perf_counter()
        with torch.device(device):
            unet = UNet2DConditionModel(**SDXL_UNET).half()
        weights = {key: value.detach().cpu().contiguous()
                   for key, value in diffusion_fixtures.unet_to_ldm(unet.state_dict()).items()}
        del unet
        save_file(weights, str(path))
        del weights
        made = time.perf_counter() - start
        manager = ModelManager(device=device, ram_budget_bytes=32 << 30, vram_reserve_bytes=0)
        ctx = NodeContext(device=device, model_folders=ModelFolders(root), models=manager)
        with use(ctx):
            info = loading.checkpoint_info(path)
            cold = timed(lambda: loading.load_unet(ctx, path, info), device)
            model = loading.load_unet(ctx, path, info)
            warm = timed(lambda: loading.load_unet(ctx, path, info), device)
            params = sum(p.numel() for p in model.unet.parameters())
            results.append({"case": "sdxl unet load", "device": device, "parameters": params,
                            "file_bytes": path.stat().st_size, "make_file_s": made, "cold_load_s": cold,
                            "warm_load_s": warm})
            generator = torch.Generator().manual_seed(0)
            positive = [[torch.randn(1, 77, 2048, generator=generator),
                         {"pooled_output": torch.randn(1, 1280, generator=generator)}]]
            negative = [[torch.randn(1, 77, 2048, generator=generator),
                         {"pooled_output": torch.randn(1, 1280, generator=generator)}]]
            latent = torch.zeros(1, 4, 128, 128)
            results.append(compare("sdxl-size unet fp16 1024px", model, positive, negative, latent, steps, repeat,
                                   device))
    return results


SDXL_VAE: dict[str, Any] = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4,
                            "down_block_types": ("DownEncoderBlock2D",) * 4,
                            "up_block_types": ("UpDecoderBlock2D",) * 4, "sample_size": 1024}
CLIP_SIZES = {"clip_l": (768, 12, "quick_gelu"), "clip_g": (1280, 32, "gelu")}


def _sdxl_checkpoint_file(path: Path, device: str) -> float:
    """Write an SDXL-shaped all-in-one checkpoint with random fp16 weights; returns the seconds it took."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    start = time.perf_counter()
    state: dict[str, torch.Tensor] = {}

    def add(prefix: str, weights: dict[str, torch.Tensor]) -> None:
        state.update({prefix + key: value.detach().to("cpu", torch.float16).contiguous()
                      for key, value in weights.items()})

    with torch.device(device):
        add("model.diffusion_model.", diffusion_fixtures.unet_to_ldm(UNet2DConditionModel(**SDXL_UNET).state_dict()))
        add("first_stage_model.", diffusion_fixtures.vae_to_ldm(AutoencoderKL(**SDXL_VAE).state_dict()))
        for name, (hidden, layers, act) in CLIP_SIZES.items():
            config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                                    num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                    max_position_embeddings=77, hidden_act=act, projection_dim=hidden,
                                    bos_token_id=49406, eos_token_id=49407)
            if name == "clip_l":
                weights = CLIPTextModel(config).state_dict()
                add("conditioner.embedders.0.transformer.", {"text_model." + k: v for k, v in weights.items()})
            else:
                weights = CLIPTextModelWithProjection(config).state_dict()
                add("conditioner.embedders.1.model.", diffusion_fixtures.open_clip_to_ldm(weights))
    save_file(state, str(path))
    return time.perf_counter() - start


def sdxl_checkpoint_case(device: str, steps: int) -> list[dict[str, Any]]:
    """A whole SDXL-shaped checkpoint: load times and one text-to-image run at 1024 x 1024."""
    from comfy_nodes.diffusion.latent_nodes import EmptyLatentImage
    from comfy_nodes.diffusion.vae_nodes import VAEDecode

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "checkpoints").mkdir()
        path = root / "checkpoints" / "sdxl_random.safetensors"
        made = _sdxl_checkpoint_file(path, device)
        torch.cuda.empty_cache() if device.startswith("cuda") else None
        manager = ModelManager(device=device, ram_budget_bytes=32 << 30, vram_reserve_bytes=0)
        ctx = NodeContext(device=device, model_folders=ModelFolders(root), models=manager)
        with use(ctx):
            loader = CheckpointLoaderSimple()
            cold = timed(lambda: loader.load_checkpoint(path.name), device)
            warm = timed(lambda: loader.load_checkpoint(path.name), device)
            model, clip, vae = loader.load_checkpoint(path.name)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            image: list[torch.Tensor] = []

            def text_to_image() -> None:
                (positive,) = CLIPTextEncode().encode(clip, "a lighthouse on a cliff at dawn, (detailed:1.2)")
                (negative,) = CLIPTextEncode().encode(clip, "blurry")
                (latent,) = EmptyLatentImage().generate(1024, 1024, 1)
                (out,) = KSampler().sample(model, 1, steps, CFG, "euler", "normal", positive, negative, latent)
                image[:] = [VAEDecode().decode(vae, out)[0]]

            text_to_image()
            seconds = timed(text_to_image, device)
            peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
            return [{"case": "sdxl checkpoint load", "device": device, "file_bytes": path.stat().st_size,
                     "make_file_s": made, "cold_load_s": cold, "warm_load_s": warm,
                     "parameters": sum(p.numel() for module in (model.unet, vae.module, *clip.encoders.values())
                                       for p in module.parameters())},
                    {"case": f"sdxl checkpoint txt2img 1024px {steps} steps", "device": device,
                     "seconds": seconds, "peak_vram_bytes": peak, "image_shape": list(image[0].shape),
                     "image_finite": bool(torch.isfinite(image[0]).all()),
                     "vae_dtype": str(next(vae.module.parameters()).dtype)}]


def flux_layers(value: str) -> tuple[int, int]:
    """``--flux-layers``: "double,single" block counts, e.g. ``2,4``."""
    try:
        double, single = (int(part) for part in value.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected two block counts as D,S (e.g. 2,4), got {value!r}") from exc
    if double < 0 or single < 0 or double + single == 0:
        raise argparse.ArgumentTypeError(f"block counts must be >= 0 and not both 0, got {value!r}")
    return double, single


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'case':34} {'device':7} {'ours s/step':>12} {'direct s/step':>14} {'speed':>7} {'peak VRAM':>10} "
          f"{'max |diff|':>10} {'outside ms/step':>16}")
    for row in results:
        if "ours_s_per_step" in row:
            diff = f"{row['max_abs_diff']:10.2e}" if "max_abs_diff" in row else f"{'':10}"
            outside = (f"{row['ours_outside_ms_per_step']:7.2f} / {row['direct_outside_ms_per_step']:.2f}"
                       if "ours_outside_ms_per_step" in row else "")
            print(f"{row['case']:34} {row['device']:7} {row['ours_s_per_step']:12.4f} "
                  f"{row['direct_s_per_step']:14.4f} {row['speed_vs_direct']:7.3f} "
                  f"{row['peak_vram_bytes'] / 2**30:9.2f}G {diff} {outside}")
        elif "cold_load_s" in row:
            weights = f", weights {row['weights_bytes'] / 2**30:.2f} GiB" if "weights_bytes" in row else ""
            print(f"{row['case']:34} {row['device']:7} cold load {row['cold_load_s']:.2f} s, warm "
                  f"{row['warm_load_s'] * 1e6:.0f} us, file {row['file_bytes'] / 2**30:.2f} GiB{weights}")
        elif "make_file_s" in row:
            print(f"{row['case']:34} {row['device']:7} {row['parameters'] / 1e9:.2f} B parameters, "
                  f"{row['file_bytes'] / 2**30:.2f} GiB written in {row['make_file_s']:.1f} s"
                  f"{' (reused)' if row.get('reused_file') else ''}")
        else:
            print(f"{row['case']:34} {row['device']:7} {row['seconds']:.2f} s, peak VRAM "
                  f"{row['peak_vram_bytes'] / 2**30:.2f}G, image {row['image_shape']} finite "
                  f"{row['image_finite']}, VAE {row['vae_dtype']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiny-size", type=int, default=256, help="image side of the tiny SD cases (px)")
    parser.add_argument("--sdxl", action="store_true", help="the SDXL-size random UNet (a GPU case)")
    parser.add_argument("--sdxl-checkpoint", action="store_true",
                        help="a whole SDXL-shaped checkpoint: load times and text to image (a GPU case)")
    parser.add_argument("--skip-tiny", action="store_true", help="leave out the tiny SD1.5/SDXL cases")
    parser.add_argument("--skip-dit", action="store_true", help="leave out the tiny Flux/SD3.5 cases")
    parser.add_argument("--flux-gpu", action="store_true",
                        help="a Flux-size random transformer in bf16 and fp8 at 1024 px (CUDA only)")
    parser.add_argument("--flux-layers", type=flux_layers, default=None, metavar="D,S",
                        help="double,single blocks of the Flux-size model (default: FLUX.1-dev's 19,38)")
    parser.add_argument("--flux-cache", type=Path, default=None, metavar="DIR",
                        help="keep the Flux-size file here and reuse it (default: a temporary directory)")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "bench_diffusion.json"))
    args = parser.parse_args()
    device = "cuda:0" if args.device == "cuda" else args.device
    if args.flux_gpu and not (device.startswith("cuda") and torch.cuda.is_available()):
        parser.error(f"--flux-gpu needs a CUDA GPU (device {device!r}, CUDA available: "
                     f"{torch.cuda.is_available()}); the Flux-size model is 24 GB in bf16")
    results = [] if args.skip_tiny else tiny_cases(device, args.steps, args.repeat, args.tiny_size)
    if not args.skip_dit:
        results += bench_diffusion_dit.tiny_dit_cases(device, args.steps, args.repeat)
    if args.sdxl:
        results += sdxl_case(device, args.steps, args.repeat)
    if args.sdxl_checkpoint:
        results += sdxl_checkpoint_case(device, args.steps)
    if args.flux_gpu:
        results += bench_diffusion_dit.flux_size_case(device, args.steps, args.repeat, layers=args.flux_layers,
                                                      cache_dir=args.flux_cache)
    print_table(results)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                               "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
