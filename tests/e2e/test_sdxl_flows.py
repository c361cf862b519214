"""The SDXL family of the Visionatrix flows (issue 13 §6) end to end, with tiny random-weight models in the real
layouts placed under the models catalog's file names (:mod:`tests.flow_models`):

- every flow through ``python -m visionatrix run-flow`` (a subprocess, as users run it);
- every flow through the server in DEFAULT mode (server + in-process worker), and through a SERVER with a
  Server-mode worker (``VIX_HOST``: the worker talks HTTP only);
- same seed -> the same PNG bytes (run-flow) / the same pixels (server, where each task's PNG names its task);
  another seed -> another image; the same seed and parameters give the same pixels through run-flow and the server.

The flows are the corpus files, run through their own form inputs (prompt, aspect ratio, the smallest step count
the form allows, fast_run). The one change: their sizes. The forms offer SDXL sizes only (1024 px and the like),
which take minutes per image on a CPU even with tiny models, so each copy feeds ``EmptyLatentImage`` through an
``Evaluate Integers`` node computing ``a//256*32`` (1024 -> 128, 832 -> 96): the aspect-ratio choice still decides
the size. Constant sizes are scaled the same way.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.corpus import VIXFLOWS
from tests.e2e.cluster import Server, WorkerProcess, scratch_database
from tests.e2e.service import ROOT, running_service
from tests.flow_models import corpus_flow_models, write_flow_models
from visionatrix.client import VixClient

pytestmark = pytest.mark.slow

FLOWS = ["animagine_xl", "juggernaut_lite", "juggernaut_xl", "mobius_xl", "playground_2_5_aesthetic",
         "playground_2_5_prometheus", "proteus_xl", "realvis_xl", "sdxl_lighting", "colorful_xl"]
ASPECT = "2:3 (832x1216)"
SHRINK = "a//256*32"
PROMPT = "a (red fox:1.2) sitting in the snow, detailed fur, soft light"
RUN_TIMEOUT_S = 300
THREADS = {"OMP_NUM_THREADS": "1"}
"""Tiny models run fastest on one thread; on a busy machine two threads per op made a run ten times slower."""


def small(pixels: int) -> int:
    """What ``SHRINK`` makes of an SDXL size."""
    return pixels // 256 * 32


@dataclass(frozen=True)
class Setup:
    flows_dir: Path       # small copies of the corpus flows (same names)
    models_dir: Path      # tiny models under the catalog's names
    infos: dict[str, dict[str, Any]]   # the original flows' manifests (inputs, models)


def shrink_graph(graph: dict[str, Any]) -> dict[str, Any]:
    """``graph`` with every ``EmptyLatentImage`` size scaled by ``SHRINK`` (linked sizes through an inserted
    ``Evaluate Integers`` node, constant ones computed here)."""
    graph = json.loads(json.dumps(graph))
    for node_id, node in list(graph.items()):
        if node["class_type"] != "EmptyLatentImage":
            continue
        for side in ("width", "height"):
            value = node["inputs"][side]
            if isinstance(value, list):
                helper = f"{node_id}_{side}_small"
                graph[helper] = {"class_type": "Evaluate Integers", "_meta": {"title": f"small {side}"},
                                 "inputs": {"python_expression": SHRINK, "print_to_console": "False", "a": value,
                                            "b": 0, "c": 0}}
                node["inputs"][side] = [helper, 0]
            else:
                node["inputs"][side] = small(int(value))
    return graph


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("sdxl_flows")
    flows_dir, models_dir = root / "flows", root / "models"
    flows_dir.mkdir()
    infos = {}
    for name in FLOWS:
        source = VIXFLOWS / f"{name}.json"
        (flows_dir / f"{name}.json").write_text(json.dumps(shrink_graph(json.loads(source.read_text()))))
        models = corpus_flow_models(source)
        assert models and all(model.get("in_catalog") for model in models), (name, models)
        write_flow_models(models, models_dir, root / "cache")
        infos[name] = {"inputs": _inputs(source), "models": models}
    return Setup(flows_dir, models_dir, infos)


def _inputs(flow_path: Path) -> dict[str, dict[str, Any]]:
    from visionatrix.flows import load_flow

    return {item["name"]: item for item in load_flow(flow_path, {}).info()["inputs"]}


def params_for(setup: Setup, name: str, seed: int, *, fast_run: bool) -> dict[str, Any]:
    """Form values: a prompt, a 2:3 aspect ratio, the fewest steps the form allows, fast_run, the seed."""
    inputs = setup.infos[name]["inputs"]
    params: dict[str, Any] = {"prompt": PROMPT, "seed": seed}
    if "aspect_ratio" in inputs:
        params["aspect_ratio"] = ASPECT
    if "steps_count" in inputs:
        params["steps_count"] = int(inputs["steps_count"]["min"])
    if "steps_number" in inputs:
        params["steps_number"] = "4 steps"
    if "fast_run" in inputs:
        params["fast_run"] = fast_run
    return params


def expected_size(setup: Setup, name: str) -> tuple[int, int]:
    if "aspect_ratio" in setup.infos[name]["inputs"]:
        return small(832), small(1216)
    return small(1024), small(1024)   # mobius_xl and sdxl_lighting: a constant 1024 x 1024


def _env(setup: Setup, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIX_MODELS_DIR": str(setup.models_dir),
            "VIX_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "VIX_FLOWS_DIRS": str(setup.flows_dir), **THREADS, **extra}


def run_flow(setup: Setup, name: str, params: dict[str, Any], out: Path) -> tuple[list[Path], float]:
    args = [sys.executable, "-m", "visionatrix", "run-flow", str(setup.flows_dir / f"{name}.json"), "--out",
            str(out), "--device", "cpu"]
    for key, value in params.items():
        args += ["--param", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    started = time.monotonic()
    proc = subprocess.run(args, cwd=out.parent, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env=_env(setup))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"{name}: run-flow exited {proc.returncode}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return [Path(line) for line in proc.stdout.split()], elapsed


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _check_image(setup: Setup, name: str, data: bytes) -> np.ndarray:
    pixels = _pixels(data)
    width, height = expected_size(setup, name)
    assert pixels.shape == (height, width, 3), (name, pixels.shape)
    assert pixels.std() > 1.0, f"{name}: a flat image"
    return pixels


# -- run-flow ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FLOWS)
def test_each_flow_runs_through_run_flow(setup: Setup, tmp_path: Path, name: str) -> None:
    """The fast_run branch where the form has one (SamplerCustom + AlignYourSteps + Evaluate Integers)."""
    (png,), elapsed = run_flow(setup, name, params_for(setup, name, 7, fast_run=True), tmp_path / "out")
    _check_image(setup, name, png.read_bytes())
    print(f"{name}: run-flow {elapsed:.1f} s")


@pytest.mark.parametrize("name", ["sdxl_lighting", "playground_2_5_aesthetic", "juggernaut_lite"])
def test_same_seed_same_png_bytes_and_another_seed_another_image(setup: Setup, tmp_path: Path, name: str) -> None:
    first, _ = run_flow(setup, name, params_for(setup, name, 11, fast_run=False), tmp_path / "a")
    again, _ = run_flow(setup, name, params_for(setup, name, 11, fast_run=False), tmp_path / "b")
    other, _ = run_flow(setup, name, params_for(setup, name, 12, fast_run=False), tmp_path / "c")
    assert first[0].read_bytes() == again[0].read_bytes()
    assert not np.array_equal(_check_image(setup, name, first[0].read_bytes()),
                              _check_image(setup, name, other[0].read_bytes()))


# -- through the server --------------------------------------------------------------------------------------------

async def _run_tasks(url: str, setup: Setup, jobs: list[tuple[str, dict[str, Any]]]) -> list[tuple[dict, bytes]]:
    """Queue every job at once, wait for each, return (task, PNG bytes)."""
    results = []
    async with VixClient(url, timeout_s=60) as vix:
        ids = [(await vix.create_task(name, params))[0] for name, params in jobs]
        for task_id, (name, _params) in zip(ids, jobs):
            task = await vix.wait_for_task(task_id, timeout_s=RUN_TIMEOUT_S)
            assert task["status"] == "finished", (name, task.get("error"), task)
            (output,) = task["outputs"]
            async with vix.session.get(vix.url(output["url"])) as response:
                assert response.status == 200
                results.append((task, await response.read()))
    return results


def _server_jobs(setup: Setup, names: list[str]) -> list[tuple[str, dict[str, Any]]]:
    jobs = [(name, params_for(setup, name, 5, fast_run=False)) for name in names]
    jobs += [(names[0], params_for(setup, names[0], 5, fast_run=False)),
             (names[0], params_for(setup, names[0], 6, fast_run=False))]
    return jobs


def _check_server_results(setup: Setup, jobs: list[tuple[str, dict[str, Any]]],
                          results: list[tuple[dict, bytes]]) -> None:
    pixels = [_check_image(setup, name, data) for (name, _), (_task, data) in zip(jobs, results)]
    assert np.array_equal(pixels[0], pixels[-2]), "the same seed gave another image"
    assert not np.array_equal(pixels[0], pixels[-1]), "another seed gave the same image"


async def test_every_flow_runs_through_the_server_in_default_mode(setup: Setup, tmp_path: Path) -> None:
    """Every flow (the KSampler branch), then the first again with the same and another seed; the same seed and
    parameters through run-flow give the same pixels."""
    jobs = _server_jobs(setup, FLOWS)
    started = time.monotonic()
    with running_service(tmp_path, _env(setup)) as service:
        async with VixClient(service.url) as vix:
            listed = {flow["name"]: flow for flow in await vix.list_flows()}
            for name in FLOWS:
                assert listed[name].get("models_missing", []) == [], listed[name]
        results = await _run_tasks(service.url, setup, jobs)
    print(f"DEFAULT mode: {len(jobs)} tasks in {time.monotonic() - started:.1f} s")
    _check_server_results(setup, jobs, results)
    (png,), _ = await asyncio.to_thread(run_flow, setup, jobs[0][0], jobs[0][1], tmp_path / "cli")
    assert np.array_equal(_pixels(png.read_bytes()), _pixels(results[0][1])), "run-flow and the server differ"


@pytest.fixture
def server_and_worker(setup: Setup, tmp_path: Path) -> Iterator[Server]:
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri, env={"VIX_FLOWS_DIRS": str(setup.flows_dir), **THREADS})
        worker = None
        try:
            server.wait_ready()
            worker = WorkerProcess("sdxl-worker", tmp_path / "worker", flows=FLOWS, server=server,
                                   env={"VIX_MODELS_DIR": str(setup.models_dir), "HF_HUB_OFFLINE": "1",
                                        **THREADS})
            worker.wait_registered(server)
            yield server
        finally:
            codes = [worker.stop() if worker is not None else 0, server.stop()]
        assert codes == [0, 0]


async def test_flows_run_on_a_server_mode_worker(setup: Setup, server_and_worker: Server) -> None:
    jobs = _server_jobs(setup, FLOWS)
    started = time.monotonic()
    results = await _run_tasks(server_and_worker.url, setup, jobs)
    print(f"Server-mode worker: {len(jobs)} tasks in {time.monotonic() - started:.1f} s")
    assert {task["worker_id"] for task, _ in results} == {"sdxl-worker"}
    _check_server_results(setup, jobs, results)


def test_the_helper_places_models_under_the_catalog_names(setup: Setup) -> None:
    """Each model of each flow is where an install from the catalog puts it, and only there: a graph asking for
    another name (animagine_xl) runs through the worker's and run-flow's mapping to the installed file."""
    renamed = []
    for name in FLOWS:
        for model in setup.infos[name]["models"]:
            folder = model["types"][0]
            file_name = model.get("filename") or model["value"]
            assert (setup.models_dir / folder / file_name).is_file(), (name, model)
            if model["value"] != file_name:
                assert not (setup.models_dir / folder / model["value"]).exists(), (name, model)
                renamed.append(name)
    assert "animagine_xl" in renamed
    assert os.stat(setup.models_dir / "checkpoints" / "RealVisXL_V5.0_fp16.safetensors").st_size > 0
