"""The bundled ``upscale_4x`` flow end to end, in every run mode, with its models installed the way users install
them: downloaded from a catalog (here a local model server serving tiny random-weight models in the real file
layouts) by the server (DEFAULT mode) or by one worker on an admin's request (SERVER mode with a Server-mode worker
and with a Database-FS worker). The upscaled image equals a direct spandrel call on the same model and image."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.e2e.cluster import Server, WorkerProcess, http_json, scratch_database, wait_until
from tests.e2e.service import ROOT, running_service
from tests.model_fixtures import good_models
from tests.model_server import ModelServer, model_server_thread
from visionatrix.client import VixClient

pytestmark = pytest.mark.slow

CATALOG = json.loads((ROOT / "visionatrix" / "models" / "models_catalog.json").read_text())
FILES = {"4x-UltraSharp": ("esrgan_x4", "/4x-UltraSharp.pth"), "RealESRGAN_x2plus": ("realesrgan_x2",
                                                                                     "/RealESRGAN_x2plus.pth")}
WIDTH, HEIGHT = 40, 28


def _model_bytes() -> dict[str, bytes]:
    """The ``.pth`` file of each catalog model, as ``torch.save`` writes it (the real files' layout)."""
    models = good_models()
    served = {}
    for name, (fixture, _path) in FILES.items():
        state_dict, wrapper, _scale = models[fixture]
        buffer = io.BytesIO()
        torch.save({wrapper: state_dict} if wrapper else state_dict, buffer)
        served[name] = buffer.getvalue()
    return served


@pytest.fixture(scope="module")
def model_files() -> dict[str, bytes]:
    return _model_bytes()


@pytest.fixture
def served(model_files: dict[str, bytes]) -> Iterator[ModelServer]:
    with model_server_thread({FILES[name][1]: data for name, data in model_files.items()}) as server:
        yield server


def _catalog(tmp_path: Path, server: ModelServer, model_files: dict[str, bytes]) -> Path:
    """The two catalog entries of ``upscale_4x`` (their real regexes), pointing at the local model server."""
    catalog = {name: {**CATALOG[name], "url": server.url(path), "hash": hashlib.sha256(model_files[name]).hexdigest(),
                      "file_size": len(model_files[name])} for name, (_fixture, path) in FILES.items()}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def _env(tmp_path: Path, catalog: Path, models_dir: Path) -> dict[str, str]:
    return {"VIX_MODELS_CATALOG": str(catalog), "VIX_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
            "VIX_MODELS_DIR": str(models_dir), "VIX_FLOWS_DIRS": str(ROOT / "flows"), "VIX_DEVICE": "cpu"}


def _photo() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _expected(model_files: dict[str, bytes], name: str, photo: bytes) -> np.ndarray:
    """A direct spandrel call on the model file and the photo (one tile: the image is smaller than 512 px)."""
    import spandrel

    state_dict = torch.load(io.BytesIO(model_files[name]), map_location="cpu", weights_only=True)
    descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict).eval()
    image = torch.from_numpy(np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"), dtype=np.float32) / 255.0)
    with torch.inference_mode():
        output = descriptor(image.permute(2, 0, 1).unsqueeze(0)).clamp(0, 1)[0].permute(1, 2, 0)
    return (output.numpy() * 255.0).round().astype(np.int16)


async def _upscale(url: str, photo: bytes, model: str = "4x-UltraSharp") -> tuple[dict[str, Any], np.ndarray]:
    async with VixClient(url, timeout_s=60) as vix:
        (task_id,) = await vix.create_task("upscale_4x", {"model": model}, files={"image": photo})
        task = await vix.wait_for_task(task_id, timeout_s=120)
        assert task["status"] == "finished", task
        (output,) = task["outputs"]
        async with vix.session.get(vix.url(output["url"])) as response:
            data = await response.read()
    return task, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _check_image(got: np.ndarray, expected: np.ndarray, scale: int) -> None:
    assert got.shape == (HEIGHT * scale, WIDTH * scale, 3)
    assert int(np.abs(got - expected).max()) <= 1, "the node's image differs from a direct spandrel call"


async def test_default_mode_installs_the_flows_models_then_upscales(tmp_path: Path, served: ModelServer,
                                                                   model_files: dict[str, bytes]) -> None:
    env = _env(tmp_path, _catalog(tmp_path, served, model_files), tmp_path / "models")
    with running_service(tmp_path, env) as service:
        async with VixClient(service.url) as vix:
            assert (await vix.get_flow("upscale_4x"))["models_missing"] == ["4x-UltraSharp.pth",
                                                                           "RealESRGAN_x2plus.pth"]
            started = await vix.install_models(flow="upscale_4x")
            assert sorted(started["started"]) == sorted(FILES)
            ended = await vix.wait_for_models(list(FILES), timeout_s=60)
            assert {name: event["state"] for name, event in ended.items()} == dict.fromkeys(FILES, "installed")
            assert (await vix.get_flow("upscale_4x"))["models_missing"] == []
        for name, (_fixture, path) in FILES.items():
            assert (tmp_path / "models" / "upscale_models" / path.lstrip("/")).read_bytes() == model_files[name]
        photo = _photo()
        _task, got = await _upscale(service.url, photo)
        _check_image(got, _expected(model_files, "4x-UltraSharp", photo), 4)
        _task, got = await _upscale(service.url, photo, "RealESRGAN x2plus")
        _check_image(got, _expected(model_files, "RealESRGAN_x2plus", photo), 2)
        workers = http_json(f"{service.url}/vapi/workers")["workers"]
        (worker,) = workers
        assert sorted(worker["models"]["present"]) == sorted(FILES)
        loaded = {item["name"] for item in worker["models"]["loaded"]}
        assert {"4x-UltraSharp.pth", "RealESRGAN_x2plus.pth"} <= {Path(name).name for name in loaded}, worker


@pytest.mark.parametrize("worker_mode", ["http", "database"])
async def test_an_admin_installs_a_flows_models_on_one_worker_which_then_runs_it(
        tmp_path: Path, served: ModelServer, model_files: dict[str, bytes], worker_mode: str) -> None:
    catalog = _catalog(tmp_path, served, model_files)
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri, env=_env(tmp_path, catalog, tmp_path / "server-models"))
        worker_env = {**_env(tmp_path, catalog, tmp_path / "worker-models"), "VIX_WORKER_FLOWS": ""}
        worker = None
        try:
            server.wait_ready()
            worker = WorkerProcess("w1", tmp_path / "w1", flows=[], server=server, env=worker_env,
                                   database_uri=database_uri if worker_mode == "database" else None,
                                   tasks_files=server.tasks_files if worker_mode == "database" else None)
            worker.wait_registered(server)
            assert "upscale_4x" not in server.workers()["w1"]["installed_flows"], "no models yet"
            queued = http_json(f"{server.url}/vapi/workers/w1/install", "POST", {"flow": "upscale_4x"})
            assert sorted(queued["queued"]) == sorted(FILES)

            def runnable() -> bool:
                listed = server.workers()["w1"]
                return "upscale_4x" in listed["installed_flows"] and sorted(listed["models"]["present"]) == sorted(
                    FILES)

            await asyncio.to_thread(wait_until, runnable, 60, "the worker installed the flow's models",
                                    every_s=0.5, logs=[server, worker])
            assert not (tmp_path / "server-models" / "upscale_models").exists(), "the server downloaded nothing"
            photo = _photo()
            task, got = await _upscale(server.url, photo)
            assert task["worker_id"] == "w1"
            _check_image(got, _expected(model_files, "4x-UltraSharp", photo), 4)
            assert http_json(f"{server.url}/vapi/workers/w1/free", "POST")["queued"] == "free"

            def freed() -> bool:
                models = server.workers()["w1"]["models"]
                return models["loaded"] == [] and models["ram_bytes"] == 0

            await asyncio.to_thread(wait_until, freed, 30, "the worker freed its models", every_s=0.5,
                                    logs=[server, worker])
        finally:
            codes = [worker.stop() if worker is not None else 0, server.stop()]
        assert codes == [0, 0]
