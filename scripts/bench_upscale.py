#!/usr/bin/env python
"""Upscale benchmark: our ImageUpscaleWithModel node against a direct spandrel call on the same model and image,
and the model manager's warm load (a cache hit).

Models are random-weight spandrel architectures (``tests/model_fixtures.py``): the tiny test models and an ESRGAN
with 64 filters and 23 blocks, the real size of 4x-UltraSharp. The node runs through the model manager and the
loader node (the file found in a models folder), the direct call on ``spandrel.ModelLoader().load_from_file``; both
on the same BCHW float32 image (the node gets it as BHWC). Goal: the node at >= 0.95 of the direct call's speed on
the CPU for an image within one tile; a warm load under 1 ms. An image larger than a tile is listed too: the node
then tiles (overlaps cost extra pixels) while the direct call runs the whole image at once.

Prints a table and writes JSON (default ``bench-results/bench_upscale.json``). Run:
``.venv/bin/python scripts/bench_upscale.py [--repeat N] [--big-size 256] [--skip-big] [--device cpu|cuda]``.
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
from safetensors.torch import save_file  # noqa: E402

from comfy_nodes.upscale_models.loader import UpscaleModelLoader, build_descriptor, model_path  # noqa: E402
from comfy_nodes.upscale_models.upscale import ImageUpscaleWithModel  # noqa: E402
from tests import model_fixtures  # noqa: E402
from visionatrix.models.folders import ModelFolders  # noqa: E402
from visionatrix.nodes.context import NodeContext, use  # noqa: E402
from visionatrix.nodes.model_manager import ModelManager  # noqa: E402

TINY_CASES = {  # (height, width); 1024 x 768 is tiled by the node (3 x 2 tiles of 363 x 400 px)
    "esrgan_x4": ((256, 256), (512, 512)),
    "realesrgan_x2": ((256, 256), (512, 512), (768, 1024)),
    "compact_x2": ((256, 256), (512, 512), (768, 1024)),
}


def timed(function: Callable[[], Any], repeat: int, device: str) -> list[float]:
    times = []
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def write_models(folder: Path, big: bool) -> dict[str, Path]:
    folder.mkdir(parents=True)
    states = {name: state for name, (state, _wrapper, _scale) in model_fixtures.good_models().items()}
    if big:
        states["esrgan_x4_64nf_23nb"] = model_fixtures.esrgan_state_dict(num_filters=64, num_blocks=23)
    paths = {}
    for name, state in states.items():
        paths[name] = folder / f"{name}.safetensors"
        save_file(state, paths[name])
    return paths


def compare(ctx: NodeContext, name: str, path: Path, size: tuple[int, int], repeat: int, *,
            warm_up: bool = True) -> dict[str, Any]:
    import spandrel

    device = ctx.device
    with use(ctx):
        ours = UpscaleModelLoader().load_model(path.name)[0]
    direct = spandrel.ModelLoader().load_from_file(path).to(device).eval()
    height, width = size
    pixels = torch.rand(1, 3, height, width, device=device)
    bhwc = pixels.permute(0, 2, 3, 1).contiguous()
    node = ImageUpscaleWithModel()

    def run_direct() -> Any:
        with torch.inference_mode():
            return direct(pixels)

    def run_node() -> Any:
        with use(ctx):
            return node.upscale(ours, bhwc)

    if warm_up:  # allocator, kernels; a real-size model's single run dwarfs them
        run_direct(), run_node()
    direct_s, node_s = [], []
    for _ in range(repeat):  # interleaved, so drift in the machine's speed hits both alike
        direct_s += timed(run_direct, 1, device)
        node_s += timed(run_node, 1, device)
    direct_med, node_med = statistics.median(direct_s), statistics.median(node_s)
    return {"case": f"{name} {width}x{height}", "device": device, "direct_s": direct_med, "node_s": node_med,
            "speed_ratio": direct_med / node_med, "repeat": repeat}


def warm_load_us(ctx: NodeContext, path: Path, count: int = 2000) -> dict[str, float]:
    manager = ctx.models
    manager.load(path, build_descriptor, kind="upscale")
    started = time.perf_counter()
    for _ in range(count):
        manager.load(path, build_descriptor, kind="upscale")
    manager_us = (time.perf_counter() - started) / count * 1e6
    loader = UpscaleModelLoader()
    with use(ctx):
        started = time.perf_counter()
        for _ in range(count):
            loader.load_model(path.name)
        node_us = (time.perf_counter() - started) / count * 1e6
        started = time.perf_counter()
        for _ in range(count):
            model_path(path.name)
        find_us = (time.perf_counter() - started) / count * 1e6
    return {"manager_hit_us": manager_us, "loader_node_hit_us": node_us, "folder_find_us": find_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per tiny-model case")
    parser.add_argument("--big-size", type=int, default=256, help="image side for the 64-filter 23-block ESRGAN")
    parser.add_argument("--big-repeat", type=int, default=1)
    parser.add_argument("--skip-big", action="store_true", help="leave out the real-size ESRGAN (slow on a CPU)")
    parser.add_argument("--device", action="append", help="cpu, cuda (default: cpu, and cuda when present)")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "bench_upscale.json"))
    args = parser.parse_args()
    devices = args.device or ["cpu"] + (["cuda:0"] if torch.cuda.is_available() else [])
    rows: list[dict[str, Any]] = []
    warm: dict[str, dict[str, float]] = {}
    print(f"{'case':<34} {'device':>7} {'direct s':>9} {'node s':>9} {'node speed':>10}")
    with tempfile.TemporaryDirectory(prefix="vix-bench-upscale-") as scratch:
        paths = write_models(Path(scratch) / "upscale_models", big=not args.skip_big)
        folders = ModelFolders(Path(scratch))
        for device in devices:
            manager = ModelManager(device=device, ram_budget_bytes=8 * 1024**3, vram_reserve_bytes=1024**3)
            ctx = NodeContext(device=device, model_folders=folders, models=manager)
            for name, sizes in TINY_CASES.items():
                for size in sizes:
                    rows.append(compare(ctx, name, paths[name], size, args.repeat))
                    print_row(rows[-1])
            if "esrgan_x4_64nf_23nb" in paths:
                side = args.big_size
                rows.append(compare(ctx, "esrgan_x4_64nf_23nb", paths["esrgan_x4_64nf_23nb"], (side, side),
                                    args.big_repeat, warm_up=device != "cpu"))
                print_row(rows[-1])
            warm[device] = warm_load_us(ctx, paths["esrgan_x4"])
            print(f"warm load on {device}: " + ", ".join(f"{k} {v:.1f} µs" for k, v in warm[device].items()))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "cases": rows, "warm_load": warm}, indent=2))
    print(f"wrote {out}")


def print_row(row: dict[str, Any]) -> None:
    print(f"{row['case']:<34} {row['device']:>7} {row['direct_s']:>9.4f} {row['node_s']:>9.4f} "
          f"{row['speed_ratio']:>10.3f}")


if __name__ == "__main__":
    main()
