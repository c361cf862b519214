"""The graph editor's shell routes (``visionatrix/server/comfy/shell.py``) over a real server: feature flags, the
empty boot lists, the model folders of ``models_dir`` and ``system_stats``."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.unit.server.conftest import MAX_UPLOAD_BYTES
from visionatrix.models.folders import STANDARD_FOLDERS, ModelFolders
from visionatrix.server.app import create_app
from visionatrix.server.comfy import PREFIXES
from visionatrix.server.services import Services

SYSTEM_KEYS = {"os", "python_version", "embedded_python", "comfyui_version", "pytorch_version", "argv", "ram_total",
               "ram_free", "required_frontend_version"}
DEVICE_KEYS = {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"}


async def _json(http: TestClient, path: str, status: int = 200) -> Any:
    response = await http.get(URL(path, encoded=True))
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def models(services: Services) -> Path:
    assert services.models_dir is not None
    root = services.models_dir
    _touch(root / "checkpoints" / "sd15.safetensors", b"12345")
    _touch(root / "checkpoints" / "xl" / "base.ckpt")
    _touch(root / "checkpoints" / "put_checkpoints_here")
    _touch(root / "checkpoints" / ".partial.safetensors")
    _touch(root / "loras" / "style.pt")
    _touch(root / "configs" / "v1.yaml")
    _touch(root / "stray.safetensors")
    (root / ".cache").mkdir()
    return root


@pytest.fixture
async def bare_http(aiohttp_client: Any, services: Services) -> TestClient:
    """A server whose services have no models folder and no user folder."""
    bare = dataclasses.replace(services, models_dir=None, model_folders=None, user_dir=None)
    return await aiohttp_client(create_app(bare))


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_features_advertise_our_upload_limit_and_no_previews_or_assets(http: TestClient, prefix: str) -> None:
    flags = await _json(http, f"{prefix}/features")
    assert flags == {"supports_preview_metadata": True, "supports_model_type_tags": False,
                     "max_upload_size": MAX_UPLOAD_BYTES,
                     "extension": {"manager": {"supports_v4": False}}, "node_replacements": True, "assets": False}


@pytest.mark.parametrize(("path", "expected"), [
    ("/api/i18n", {}), ("/api/workflow_templates", {}), ("/api/global_subgraphs", {}),
    ("/api/node_replacements", {}), ("/comfy/api/i18n", {}),
])
async def test_boot_lists_answer_empty(http: TestClient, path: str, expected: Any) -> None:
    assert await _json(http, path) == expected


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_our_editor_extensions_are_listed_and_served_and_nothing_else_is(http: TestClient, prefix: str) -> None:
    assert await _json(http, f"{prefix}/extensions") == ["/extensions/visionatrix/flow_templates.js",
                                                         "/extensions/visionatrix/open_flow.js"]
    # the editor at /comfy/ imports it through its own base: /comfy/extensions/visionatrix/open_flow.js
    response = await http.get(f"{prefix}/extensions/visionatrix/open_flow.js")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/javascript")
    assert "registerExtension" in await response.text()
    for name in ("missing.js", "..%2Fshell.py", "__init__.py", "%2E%2E"):
        response = await http.get(f"{prefix}/extensions/visionatrix/{name}")
        assert response.status == 404, name


async def test_an_unknown_subgraph_blueprint_is_a_json_404(http: TestClient) -> None:
    body = await _json(http, "/api/global_subgraphs/abc", 404)
    assert body["error"] == "not_found" and "abc" in body["message"]


async def test_embeddings_are_model_files_of_the_embeddings_folder_without_extension(
        http: TestClient, services: Services) -> None:
    assert await _json(http, "/api/embeddings") == []
    assert services.models_dir is not None
    folder = services.models_dir / "embeddings"
    for name in ("easy.pt", "neg/bad.safetensors", "notes.txt", ".hidden.pt"):
        _touch(folder / name)
    assert await _json(http, "/api/embeddings") == ["easy", "neg/bad"]


async def test_model_folders_are_the_standard_ones_then_other_visible_subfolders_of_models_dir(
        http: TestClient, models: Path) -> None:
    (models / "unet").mkdir()
    assert await _json(http, "/models") == [*STANDARD_FOLDERS, "configs"]


async def test_a_model_folder_lists_its_model_files_at_any_depth(http: TestClient, models: Path) -> None:
    assert await _json(http, "/api/models/checkpoints") == ["sd15.safetensors", "xl/base.ckpt"]
    assert await _json(http, "/api/models/loras") == ["style.pt"]


@pytest.mark.parametrize("folder", ["unknown", "..", "%2E%2E", "..%2Floras", "checkpoints%2Fxl", ".cache",
                                    "stray.safetensors", "%2Fetc"])
async def test_a_model_folder_that_is_not_a_subfolder_of_models_dir_is_404(
        http: TestClient, models: Path, folder: str) -> None:
    for route in ("/api/models", "/api/experiment/models"):
        body = await _json(http, f"{route}/{folder}", 404)
        assert body["error"] == "not_found"


async def test_a_model_folder_with_a_control_character_is_refused_as_a_bad_url(http: TestClient,
                                                                               models: Path) -> None:
    for route in ("/api/models", "/api/experiment/models"):
        assert (await _json(http, f"{route}/loras%00", 400))["error"] == "invalid_url"


async def test_the_model_library_lists_folders_with_absolute_paths_but_not_configs(
        http: TestClient, models: Path) -> None:
    library = await _json(http, "/api/experiment/models")
    assert [entry["name"] for entry in library] == list(STANDARD_FOLDERS)
    folders = {entry["name"]: entry["folders"] for entry in library}
    assert folders["checkpoints"] == [str((models / "checkpoints").absolute())]
    assert folders["diffusion_models"] == [str((models / "diffusion_models").absolute()),
                                           str((models / "unet").absolute())]
    await _json(http, "/api/experiment/models/configs", 404)


async def test_a_model_library_folder_gives_each_file_with_its_size_and_times(http: TestClient, models: Path) -> None:
    entries = await _json(http, "/api/experiment/models/checkpoints")
    assert [entry["name"] for entry in entries] == ["sd15.safetensors", "xl/base.ckpt"]
    first = entries[0]
    stat = (models / "checkpoints" / "sd15.safetensors").stat()
    assert first == {"name": "sd15.safetensors", "pathIndex": 0, "modified": stat.st_mtime,
                     "created": stat.st_ctime, "size": 5}


async def test_a_symlink_loop_in_a_model_folder_is_listed_once(http: TestClient, models: Path) -> None:
    os.symlink(models / "loras", models / "loras" / "again")
    assert await _json(http, "/api/models/loras") == ["style.pt"]


async def test_extra_model_paths_add_roots_whose_files_are_listed_after_models_dir_ones(
        aiohttp_client: Any, services: Services, models: Path, tmp_path: Path) -> None:
    collection = tmp_path / "a1111" / "Stable-diffusion"
    _touch(collection / "sd15.safetensors", b"shadowed")
    _touch(collection / "dreamshaper.safetensors", b"123")
    folders = ModelFolders(models, {"checkpoints": [collection], "ipadapter": [tmp_path / "a1111" / "ip"]})
    http = await aiohttp_client(create_app(dataclasses.replace(services, model_folders=folders)))
    assert await _json(http, "/api/models/checkpoints") == ["dreamshaper.safetensors", "sd15.safetensors",
                                                            "xl/base.ckpt"]
    entries = await _json(http, "/api/experiment/models/checkpoints")
    assert [(entry["name"], entry["pathIndex"], entry["size"]) for entry in entries] == [
        ("dreamshaper.safetensors", 1, 3), ("sd15.safetensors", 0, 5), ("xl/base.ckpt", 0, 1)]
    library = {entry["name"]: entry["folders"] for entry in await _json(http, "/api/experiment/models")}
    assert library["checkpoints"] == [str((models / "checkpoints").absolute()), str(collection.absolute())]
    assert await _json(http, "/api/models/unet") == []


async def test_without_a_models_dir_the_model_routes_are_empty_or_404(bare_http: TestClient) -> None:
    assert await _json(bare_http, "/api/models") == []
    assert await _json(bare_http, "/api/experiment/models") == []
    assert await _json(bare_http, "/api/embeddings") == []
    await _json(bare_http, "/api/models/checkpoints", 404)
    await _json(bare_http, "/api/experiment/models/checkpoints", 404)


async def test_system_stats_shows_no_arguments_secrets_or_paths(http: TestClient, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/opt/vix/bin/visionatrix", "run", "--worker-auth", "s3cret-token",
                                      "--database-uri", "postgresql+asyncpg://vix:hunter2@db/vix"])
    body = await (await http.get("/api/system_stats")).text()
    assert "s3cret-token" not in body and "hunter2" not in body and "/opt/vix" not in body
    assert (await _json(http, "/api/system_stats"))["system"]["argv"] == ["visionatrix"]


async def test_system_stats_has_the_shape_the_editor_validates(http: TestClient) -> None:
    import torch

    stats = await _json(http, "/api/system_stats")
    system = stats["system"]
    assert set(system) >= SYSTEM_KEYS
    assert system["comfyui_version"] == "9.9.9-test"
    assert system["required_frontend_version"] == "1.58.1"
    assert system["pytorch_version"] == torch.__version__
    assert system["embedded_python"] is False and system["os"] == sys.platform
    assert system["python_version"] == sys.version and system["argv"] == [Path(sys.argv[0]).name]
    assert system["ram_total"] >= system["ram_free"] > 0
    assert stats["devices"] and all(set(device) == DEVICE_KEYS for device in stats["devices"])
    primary = stats["devices"][0]
    if torch.cuda.is_available():
        assert primary["type"] == "cuda" and primary["index"] == 0 and primary["vram_total"] > 0
    else:
        assert primary == {"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0,
                           "torch_vram_total": 0, "torch_vram_free": 0}


async def test_the_websocket_sends_the_same_feature_flags_as_features(http: TestClient) -> None:
    features = await (await http.get("/api/features")).json()
    async with http.ws_connect("/api/ws?clientId=flags") as ws:
        await ws.receive_json(timeout=5)
        await ws.send_json({"type": "feature_flags", "data": {}})
        assert await ws.receive_json(timeout=5) == {"type": "feature_flags", "data": features}
