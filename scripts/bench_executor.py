#!/usr/bin/env python
"""Executor benchmark: scheduling overhead per node, cache-hit re-runs, and one bundled flow on a 1024² image.

Prints a table and writes JSON (default ``bench-results/bench_executor.json``). Run: ``make bench`` or
``.venv/bin/python scripts/bench_executor.py [--repeat N] [--json PATH] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visionatrix.executor.run import Executor, ExecutorSettings  # noqa: E402
from visionatrix.nodes.registry import NodeRegistry  # noqa: E402


class BenchInt:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 0})}}

    def run(self, value: int) -> tuple[int]:
        return (value + 1,)


class BenchSink:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {})}}

    def run(self, value: int) -> dict[str, Any]:
        return {}


def chain(n: int, seed: int = 0) -> dict[str, Any]:
    prompt: dict[str, Any] = {"0": {"class_type": "BenchInt", "inputs": {"value": seed}}}
    for i in range(1, n - 1):
        prompt[str(i)] = {"class_type": "BenchInt", "inputs": {"value": [str(i - 1), 0]}}
    prompt[str(n - 1)] = {"class_type": "BenchSink", "inputs": {"value": [str(n - 2), 0]}}
    return prompt


def fan_out(n: int, seed: int = 0) -> dict[str, Any]:
    prompt: dict[str, Any] = {"src": {"class_type": "BenchInt", "inputs": {"value": seed}}}
    for i in range(n - 1):
        prompt[str(i)] = {"class_type": "BenchSink", "inputs": {"value": ["src", 0]}}
    return prompt


async def timed_runs(executor: Executor, make: Any, n: int, repeat: int, *, fresh: bool) -> dict[str, list[float]]:
    """Per run: validation time, execution time (device thread, events) and the whole call."""
    times: dict[str, list[float]] = {"validate": [], "run": [], "total": []}
    for r in range(repeat):
        prompt = make(n, seed=r + 1 if fresh else 0)
        started = time.perf_counter()
        validated = executor.validate(prompt)
        validated.raise_for_errors()
        checked = time.perf_counter()
        await executor.run_validated(validated)
        done = time.perf_counter()
        times["validate"].append(checked - started)
        times["run"].append(done - checked)
        times["total"].append(done - started)
    return times


async def bench_graphs(device: str, repeat: int) -> list[dict[str, Any]]:
    registry = NodeRegistry()
    registry.register_mappings({"BenchInt": BenchInt, "BenchSink": BenchSink}, None, python_module="bench",
                               pack="bench")
    executor = Executor(registry, ExecutorSettings(device=device, cache_max_entries=5000))
    rows = []
    try:
        for label, make, n, fresh in (("chain of 1,000 trivial nodes", chain, 1000, True),
                                      ("fan-out of 1,000 trivial nodes", fan_out, 1000, True)):
            rows.append(_row(label, await timed_runs(executor, make, n, repeat, fresh=fresh), n))
        await executor.execute(chain(100))
        times = await timed_runs(executor, chain, 100, repeat, fresh=False)
        rows.append(_row("re-run unchanged 100-node graph (all cached)", times, 100))
    finally:
        executor.close()
    return rows


def bench_flow(device: str, repeat: int) -> dict[str, Any]:
    from PIL import Image

    from visionatrix.flows import FlowStore, bind_params

    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    store = FlowStore([ROOT / "flows"], registry.object_info())
    flow = store.get("web_resize_sharpen")
    with tempfile.TemporaryDirectory() as scratch:
        input_dir, out_dir = Path(scratch) / "in", Path(scratch) / "out"
        input_dir.mkdir()
        Image.open(ROOT / "flows/examples/sample.jpg").convert("RGB").resize((1024, 1024)).save(input_dir / "i.png")
        executor = Executor(registry, ExecutorSettings(device=device, input_dir=input_dir, output_dir=out_dir,
                                                       temp_dir=Path(scratch) / "t", cache_max_entries=0))
        try:
            times: dict[str, list[float]] = {"validate": [], "run": [], "total": []}
            for _ in range(repeat):
                prompt = bind_params(flow, {"width": 1024}, {"image": "i.png"})
                started = time.perf_counter()
                validated = executor.validate(prompt)
                checked = time.perf_counter()
                asyncio.run(executor.run_validated(validated))
                done = time.perf_counter()
                times["validate"].append(checked - started)
                times["run"].append(done - checked)
                times["total"].append(done - started)
        finally:
            executor.close()
    return _row(f"flow web_resize_sharpen, 1024x1024 ({device})", times, len(flow.graph))


def _row(label: str, times: dict[str, list[float]], nodes: int) -> dict[str, Any]:
    total = statistics.median(times["total"])
    return {"case": label, "nodes": nodes, "runs": len(times["total"]), "median_s": total,
            "min_s": min(times["total"]), "validate_median_s": statistics.median(times["validate"]),
            "run_median_s": statistics.median(times["run"]), "per_node_us": total / nodes * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "bench_executor.json"))
    args = parser.parse_args()
    from visionatrix.executor.devices import pick_device

    device = pick_device(args.device)
    rows = [*asyncio.run(bench_graphs(device, args.repeat)), bench_flow(device, args.repeat)]
    print(f"{'case':<46} {'nodes':>5} {'median s':>9} {'min s':>8} {'validate s':>10} {'run s':>8} {'µs/node':>8}")
    for row in rows:
        print(f"{row['case']:<46} {row['nodes']:>5} {row['median_s']:>9.4f} {row['min_s']:>8.4f} "
              f"{row['validate_median_s']:>10.4f} {row['run_median_s']:>8.4f} {row['per_node_us']:>8.1f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "python": platform.python_version(),
                               "machine": platform.machine(), "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
