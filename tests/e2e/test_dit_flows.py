"""The Flux.1 and SD3.5 Visionatrix flows (issue 14 §4) end to end, with tiny random-weight models in the real
layouts placed under the models catalog's file names (:mod:`tests.flow_models`, :mod:`tests.dit_flow_files`):

- every flow through ``python -m visionatrix run-flow`` (a subprocess, as users run it), with its own form
  inputs (prompt, aspect ratio, the fewest steps the form allows, its images and masks);
- same seed and parameters -> the same PNG bytes; another seed -> another image;
- every flow through the server in DEFAULT mode (server + in-process worker): tasks created with their forms
  (image inputs uploaded), the results downloaded; the same seed through run-flow and the server gives the same
  pixels.

The flows are the corpus files; the one change is their sizes (their forms offer ~1 megapixel only, minutes per
image on a CPU even with tiny models): every latent size is divided by 8 (``EmptyLatentImage`` /
``EmptySD3LatentImage`` fed through an ``Evaluate Integers`` node computing ``a//256*32`` where the aspect-ratio
choice links them, constants computed here), ``ModelSamplingFlux``'s size likewise, InpaintCrop's target sizes
(512-1024 -> 64-128), the outpainting canvas of ``flux1_extend`` (``1024-a`` -> ``128-a``) and Kontext's reference
image (an ``ImageScaleBy`` 1/8 after ``FluxKontextImageScale``).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.corpus import VIXFLOWS
from tests.e2e.service import ROOT, running_service
from tests.flow_models import corpus_flow_models, write_flow_models
from visionatrix.client import VixClient

pytestmark = pytest.mark.slow

FLOWS = ["flux1_dev", "flux1_schnell", "flux1_kontext", "flux1_dev_inpaint", "flux1_schnell_inpaint",
         "flux1_extend", "sd3_5_large", "sd3_5_large_8bit", "sd3_5_medium", "sketch_pencil", "auraflow", "pixart_e",
         "hunyuan_dit"]
ASPECT = "2:3 (832x1216)"
SHRINK = "a//256*32"
PROMPT = "a photo of a red cat on the table"
RUN_TIMEOUT_S = 300
THREADS = {"OMP_NUM_THREADS": "1"}
SOURCE_SIZE = (96, 80)
"""The inpainting flows' source image (their output keeps its size)."""
EXTEND_SOURCE = 80
"""flux1_extend's square source: resized into the 64 x 64 middle of a 128 x 128 canvas (extend 64 x 64)."""


def small(pixels: int) -> int:
    """What ``SHRINK`` makes of an SDXL size."""
    return pixels // 256 * 32


@dataclass(frozen=True)
class Setup:
    flows_dir: Path       # small copies of the corpus flows (same names)
    models_dir: Path      # tiny models under the catalog's names
    images: dict[str, Path]
    infos: dict[str, dict[str, Any]]   # the original flows' manifests (inputs, models)


def shrink_graph(graph: dict[str, Any]) -> dict[str, Any]:
    """``graph`` with its sizes divided by 8 (see the module docstring)."""
    graph = json.loads(json.dumps(graph))
    for node_id, node in list(graph.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("EmptyLatentImage", "EmptySD3LatentImage", "ModelSamplingFlux"):
            for side in ("width", "height"):
                value = inputs[side]
                if isinstance(value, list):
                    helper = f"{node_id}_{side}_small"
                    graph[helper] = {"class_type": "Evaluate Integers", "_meta": {"title": f"small {side}"},
                                     "inputs": {"python_expression": SHRINK, "print_to_console": "False",
                                                "a": value, "b": 0, "c": 0}}
                    inputs[side] = [helper, 0]
                else:
                    inputs[side] = small(int(value))
        elif kind == "InpaintCrop":
            for key in ("force_width", "force_height", "min_width", "min_height", "max_width", "max_height"):
                inputs[key] = int(inputs[key]) // 8
        elif kind == "MathExpression|pysssss":
            inputs["expression"] = str(inputs["expression"]).replace("1024", "128")
        elif kind == "FluxKontextImageScale":
            helper = f"{node_id}_small"
            graph[helper] = {"class_type": "ImageScaleBy", "_meta": {"title": "small reference"},
                             "inputs": {"image": [node_id, 0], "upscale_method": "area", "scale_by": 0.125}}
            for other_id, other in graph.items():
                if other_id != helper:
                    for name, value in other["inputs"].items():
                        if value == [node_id, 0]:
                            other["inputs"][name] = [helper, 0]
    return graph


def _images(root: Path) -> dict[str, Path]:
    """A source picture, an inpainting mask (a white rectangle) and a square picture for outpainting."""
    with Image.open(ROOT / "flows" / "examples" / "sample.jpg") as sample:
        sample = sample.convert("RGB")
        paths = {"source": root / "source.png", "square": root / "square.png", "mask": root / "mask.png"}
        sample.resize(SOURCE_SIZE, Image.Resampling.LANCZOS).save(paths["source"])
        sample.resize((EXTEND_SOURCE, EXTEND_SOURCE), Image.Resampling.LANCZOS).save(paths["square"])
    mask = Image.new("RGB", SOURCE_SIZE, "black")
    mask.paste((255, 255, 255), (24, 16, 72, 56))
    mask.save(paths["mask"])
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("dit_flows")
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
    return Setup(flows_dir, models_dir, _images(root), infos)


def _inputs(flow_path: Path) -> dict[str, dict[str, Any]]:
    from visionatrix.flows import load_flow

    return {item["name"]: item for item in load_flow(flow_path, {}).info()["inputs"]}


def params_for(setup: Setup, name: str, seed: int) -> dict[str, Any]:
    """Form values: a prompt, a 2:3 aspect ratio, the fewest steps the form allows, one image, the seed."""
    inputs = setup.infos[name]["inputs"]
    params: dict[str, Any] = {"seed": seed}
    if "prompt" in inputs:
        params["prompt"] = PROMPT
    if "aspect_ratio" in inputs:
        params["aspect_ratio"] = ASPECT
    if "steps_count" in inputs:
        params["steps_count"] = int(inputs["steps_count"]["min"])
    if "batch_size" in inputs:
        params["batch_size"] = 1
    return params


def files_for(setup: Setup, name: str) -> dict[str, Path]:
    inputs = setup.infos[name]["inputs"]
    files = {}
    if "input_image" in inputs:
        files["input_image"] = setup.images["source"]
    if "source_image" in inputs:
        files["source_image"] = setup.images["square" if name == "flux1_extend" else "source"]
    if "mask_redraw" in inputs:
        files["mask_redraw"] = setup.images["mask"]
    return files


def expected_size(setup: Setup, name: str) -> tuple[int, int]:
    if "aspect_ratio" in setup.infos[name]["inputs"]:
        return small(832), small(1216)
    if "mask_redraw" in setup.infos[name]["inputs"]:
        return SOURCE_SIZE
    return 128, 128   # kontext: a constant 1024 x 1024 latent; extend: the 1024 x 1024 canvas


def _env(setup: Setup) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIX_MODELS_DIR": str(setup.models_dir),
            "VIX_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "VIX_FLOWS_DIRS": str(setup.flows_dir), **THREADS}


def _run_flow_args(setup: Setup, name: str, params: dict[str, Any], out: Path) -> list[str]:
    args = ["run-flow", str(setup.flows_dir / f"{name}.json"), "--out", str(out), "--device", "cpu"]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    for key, path in files_for(setup, name).items():
        args += ["--input", f"{key}={path}"]
    return args


@pytest.fixture(scope="module")
def cli(setup: Setup) -> Iterator[Callable[[str, dict[str, Any], Path], Path]]:
    """``run-flow`` in this process (``visionatrix.cli.main.main``, what ``python -m visionatrix`` calls) with the
    service's environment and one torch thread (as the service runs): ``cli(name, params, out)`` -> the PNG."""
    import torch

    from visionatrix.cli.main import main

    def run(name: str, params: dict[str, Any], out: Path) -> Path:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(_run_flow_args(setup, name, params, out))
        assert code == 0, f"{name}: run-flow exited {code}\n{stderr.getvalue()[-4000:]}"
        (png,) = [Path(line) for line in stdout.getvalue().split()]
        return png

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _env(setup).items():
            if key not in ("PATH", "PYTHONPATH"):
                patch.setenv(key, value)
        torch.set_num_threads(1)
        try:
            yield run
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_flow_results(setup: Setup, cli: Callable[..., Path],
                     tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes | str]:
    """Every flow run once through run-flow with seed 5: its PNG bytes, or the failure."""
    root = tmp_path_factory.mktemp("run_flow")
    results: dict[str, bytes | str] = {}
    for name in FLOWS:
        started = time.monotonic()
        try:
            results[name] = cli(name, params_for(setup, name, 5), root / name).read_bytes()
        except Exception:  # one flow's failure is that flow's test's, not every test's
            results[name] = traceback.format_exc()[-4000:]
        print(f"{name}: run-flow {time.monotonic() - started:.1f} s")
    return results


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
def test_each_flow_runs_through_run_flow(setup: Setup, run_flow_results: dict[str, bytes | str], name: str) -> None:
    result = run_flow_results[name]
    assert isinstance(result, bytes), result
    _check_image(setup, name, result)


@pytest.mark.parametrize("name", ["flux1_dev_inpaint", "sd3_5_large_8bit"])
def test_same_seed_same_png_bytes_and_another_seed_another_image(setup: Setup, cli: Callable[..., Path],
                                                                 run_flow_results: dict[str, bytes | str],
                                                                 tmp_path: Path, name: str) -> None:
    again = cli(name, params_for(setup, name, 5), tmp_path / "again").read_bytes()
    other = cli(name, params_for(setup, name, 6), tmp_path / "other").read_bytes()
    assert again == run_flow_results[name]
    assert not np.array_equal(_check_image(setup, name, again), _check_image(setup, name, other))


def test_python_m_visionatrix_run_flow_gives_the_same_png(setup: Setup, run_flow_results: dict[str, bytes | str],
                                                          tmp_path: Path) -> None:
    """The real command, as users run it (flux1_dev: fp8 storage, a LoRA, the aspect-ratio choice)."""
    name = "flux1_dev"
    args = [sys.executable, "-m", "visionatrix", *_run_flow_args(setup, name, params_for(setup, name, 5),
                                                                  tmp_path / "out")]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env=_env(setup))
    assert proc.returncode == 0, f"run-flow exited {proc.returncode}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    (png,) = [Path(line) for line in proc.stdout.split()]
    assert png.read_bytes() == run_flow_results[name]


# -- through the server --------------------------------------------------------------------------------------------

async def _run_tasks(url: str, setup: Setup, jobs: list[tuple[str, dict[str, Any]]]) -> list[tuple[dict, bytes]]:
    """Queue every job at once (image inputs uploaded), wait for each, return (task, PNG bytes)."""
    results = []
    async with VixClient(url, timeout_s=60) as vix:
        ids = [(await vix.create_task(name, params, files_for(setup, name)))[0] for name, params in jobs]
        for task_id in ids:
            task = await vix.wait_for_task(task_id, timeout_s=RUN_TIMEOUT_S)
            if task["status"] != "finished":
                results.append((task, b""))
                continue
            (output,) = task["outputs"]
            async with vix.session.get(vix.url(output["url"])) as response:
                assert response.status == 200
                results.append((task, await response.read()))
    return results


async def test_every_flow_runs_through_the_server_in_default_mode(setup: Setup,
                                                                 run_flow_results: dict[str, bytes | str],
                                                                 tmp_path: Path) -> None:
    """Every flow created with its form (the same values as run-flow's: the same pixels), then the first one with
    another seed (another image)."""
    jobs = [(name, params_for(setup, name, 5)) for name in FLOWS] + [(FLOWS[0], params_for(setup, FLOWS[0], 6))]
    started = time.monotonic()
    with running_service(tmp_path, _env(setup)) as service:
        async with VixClient(service.url) as vix:
            listed = {flow["name"]: flow for flow in await vix.list_flows()}
            missing = {name: listed[name].get("models_missing") for name in FLOWS if listed[name].get("models_missing")}
        results = await _run_tasks(service.url, setup, jobs)
    print(f"DEFAULT mode: {len(jobs)} tasks in {time.monotonic() - started:.1f} s")
    assert missing == {}
    failed = {name: task.get("error") for (name, _), (task, _) in zip(jobs, results, strict=True)
              if task["status"] != "finished"}
    assert failed == {}
    for (name, _), (_task, data) in zip(jobs[:-1], results[:-1], strict=True):
        pixels = _check_image(setup, name, data)
        expected = run_flow_results[name]
        assert isinstance(expected, bytes), expected
        assert np.array_equal(pixels, _pixels(expected)), f"{name}: run-flow and the server differ"
    assert not np.array_equal(_check_image(setup, FLOWS[0], results[-1][1]), _pixels(results[0][1])), \
        "another seed gave the same image"


# -- the model files -----------------------------------------------------------------------------------------------

def test_the_helper_places_models_under_the_catalog_names(setup: Setup) -> None:
    """Each model of each flow is where an install from the catalog puts it (T5's tokenizer with it), the SD3.5
    8-bit file is a scaled fp8 one, and each Flux LoRA has its catalog file's format."""
    from safetensors import safe_open

    for name in FLOWS:
        for model in setup.infos[name]["models"]:
            assert (setup.models_dir / model["types"][0] / model["filename"]).is_file(), (name, model)
    assert (setup.models_dir / "text_encoders" / "t5_tokenizer" / "tokenizer.json").is_file()
    checkpoints = setup.models_dir / "checkpoints"
    with safe_open(checkpoints / "sd3.5_large_fp8_scaled.safetensors", "pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("model.diffusion_model.scaled_fp8").dtype == torch.float8_e4m3fn
        scaled = [key for key in keys if key.endswith(".scale_weight")]
        assert scaled and all(handle.get_tensor(key.replace(".scale_weight", ".weight")).dtype == torch.float8_e4m3fn
                              for key in scaled)
    loras = setup.models_dir / "loras"
    prefixes = {"flux_realism_lora.safetensors": "diffusion_model.double_blocks.",
                "alimama-creative-FLUX.1-Turbo-Alpha.safetensors": "transformer.transformer_blocks.",
                "shou_xin.safetensors": "lora_unet_double_blocks_"}
    for file_name, prefix in prefixes.items():
        with safe_open(loras / file_name, "pt") as handle:
            names = handle.keys()
        assert any(key.startswith(prefix) for key in names), file_name
