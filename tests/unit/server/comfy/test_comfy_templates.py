"""The editor's Templates dialog (``visionatrix/server/comfy/templates.py``) over a real server: our installed flows
as the ``visionatrix`` module, the official templates of an installed ``comfyui_workflow_templates*`` package marked
with what they lack here, and the files the editor fetches for a template."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from visionatrix.server.app import create_app
from visionatrix.server.comfy import PREFIXES, templates
from visionatrix.server.services import Services

OFFICIAL_PACKAGE = "comfyui_workflow_templates_json"


async def _get(http: TestClient, path: str, status: int = 200) -> Any:
    response = await http.get(URL(path, encoded=True))
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


def _category(index: list[dict[str, Any]], module: str) -> list[dict[str, Any]]:
    return [category for category in index if category["moduleName"] == module]


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def official_dir(tmp_path: Path) -> Path:
    """A package's ``templates/`` folder: one template needing a node type we have, one we lack (inside a subgraph),
    a note (drawn only by the editor) and two model files, one of them in the models folder."""
    root = tmp_path / "official" / "templates"
    _write(root / "index.json", [{"moduleName": "default", "title": "Image", "type": "image", "templates": [
        {"name": "t2i", "title": "Text to image", "description": "Draw.", "mediaType": "image",
         "mediaSubtype": "webp", "tags": ["Image"]},
        {"name": "song", "title": "Song", "description": "Sing.", "mediaType": "audio", "mediaSubtype": "mp3"},
        {"name": "tune", "title": "Tune", "description": "Hum.", "mediaType": "audio", "mediaSubtype": "mp3"}]}])
    _write(root / "index.fr.json", [{"moduleName": "default", "title": "Image", "type": "image", "templates": [
        {"name": "t2i", "title": "Texte vers image", "description": "Dessiner.", "mediaType": "image",
         "mediaSubtype": "webp"}]}])
    _write(root / "t2i.json", {"nodes": [
        {"id": 1, "type": "KSampler", "properties": {"models": [
            {"name": "here.safetensors", "directory": "checkpoints"},
            {"name": "absent.safetensors", "directory": "vae"}]}},
        {"id": 2, "type": "MarkdownNote"},
        {"id": 3, "type": "8b3c-sub"}],
        "definitions": {"subgraphs": [{"id": "8b3c-sub", "nodes": [{"id": 1, "type": "NoSuchNodeAnywhere"}]}]}})
    (root / "t2i-1.webp").write_bytes(b"RIFF0000WEBP")
    for name in ("song", "tune"):
        _write(root / f"{name}.json", {"nodes": [{"id": 1, "type": "KSampler"}]})
    (root / "tune-1.mp3").write_bytes(b"ID3")
    _write(root / "index_logo.json", {"Acme": "logo/acme.png", "Gone": "logo/gone.png"})
    (root / "logo").mkdir()
    (root / "logo" / "acme.png").write_bytes(b"PNG")
    (tmp_path / "official" / "secret.json").write_text("{}")
    return root


@pytest.fixture
async def http(aiohttp_client: Any, services: Services, official_dir: Path) -> TestClient:
    assert services.models_dir is not None
    _write(services.models_dir / "checkpoints" / "here.safetensors", {})
    app = create_app(services)
    app[templates.LIBRARY] = templates.TemplateLibrary(dirs=[official_dir.resolve()])
    return await aiohttp_client(app)


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_index_lists_our_installed_flows_with_their_descriptions(
        http: TestClient, services: Services, prefix: str) -> None:
    index = await _get(http, f"{prefix}/templates/index.json")
    [ours] = _category(index, templates.MODULE)
    assert index[0]["moduleName"] == templates.MODULE  # first: the dialog lists its groups in the index's order
    assert ours["category"] == "Visionatrix"
    entries = {entry["name"]: entry for entry in ours["templates"]}
    flows = services.flows.flows()
    assert sorted(entries) == sorted(flow.name for flow in flows if not flow.manifest.hidden)
    sketch = entries["pencil_sketch"]
    manifest = services.flows.get("pencil_sketch").manifest
    assert sketch["title"] == manifest.display_name and sketch["description"] == manifest.description
    assert sketch["mediaSubtype"] == "svg" and sketch["vixMissingNodeTypes"] == []


async def test_index_marks_official_templates_with_the_node_types_and_models_they_lack(http: TestClient) -> None:
    [image] = _category(await _get(http, "/comfy/templates/index.json"), "default")
    t2i = image["templates"][0]
    assert t2i["vixMissingNodeTypes"] == ["NoSuchNodeAnywhere"]
    assert t2i["vixMissingModels"] == ["absent.safetensors"]
    assert t2i["description"].startswith("Draw. ") and "NoSuchNodeAnywhere" in t2i["description"]
    assert "absent.safetensors" in t2i["description"] and "here.safetensors" not in t2i["description"]
    assert t2i["tags"] == ["Image", "Missing nodes", "Missing models"]


async def test_a_localized_index_is_served_and_an_unknown_locale_is_a_404(http: TestClient) -> None:
    index = await _get(http, "/comfy/templates/index.fr.json")
    assert _category(index, "default")[0]["templates"][0]["title"] == "Texte vers image"
    assert _category(index, templates.MODULE)
    body = await _get(http, "/comfy/templates/index.de.json", 404)
    assert body["error"] == "not_found"


async def test_the_official_template_files_are_served_and_nothing_outside_their_folder(http: TestClient) -> None:
    workflow = await _get(http, "/comfy/templates/t2i.json")
    assert workflow["nodes"][0]["type"] == "KSampler"
    response = await http.get("/comfy/templates/t2i-1.webp")
    assert response.status == 200 and await response.read() == b"RIFF0000WEBP"
    assert await _get(http, "/comfy/templates/index_logo.json") == {"Acme": "logo/acme.png"}
    response = await http.get("/comfy/templates/logo/acme.png")
    assert response.status == 200 and await response.read() == b"PNG"
    for name in ("missing.json", "nope-1.webp", "logo/gone.png", "logo/..%2F..%2Fsecret.json", "..%2Fsecret.json",
                 "%2E%2E", "..%5Csecret.json"):
        response = await http.get(URL(f"/comfy/templates/{name}", encoded=True))
        assert response.status == 404, name


async def test_a_missing_thumbnail_of_an_official_template_is_a_card_with_its_name(http: TestClient) -> None:
    response = await http.get("/comfy/templates/t2i-2.webp")
    assert response.status == 200 and response.content_type == "image/svg+xml"
    assert ">t2i</text>" in await response.text()


async def test_an_audio_template_without_its_sound_is_shown_as_its_card(http: TestClient) -> None:
    index = await _get(http, "/comfy/templates/index.json")
    shown = {template["name"]: (template["mediaType"], template["mediaSubtype"])
             for category in _category(index, "default") for template in category["templates"]}
    assert shown["song"] == ("image", "webp"), "no package holds song-1.mp3"
    assert shown["tune"] == ("audio", "mp3")
    response = await http.get("/comfy/templates/song-1.webp")
    assert response.status == 200 and ">song</text>" in await response.text()
    assert await (await http.get("/comfy/templates/tune-1.mp3")).read() == b"ID3"


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_flow_template_is_a_ui_workflow_carrying_the_flows_api_graph(
        http: TestClient, services: Services, prefix: str) -> None:
    workflow = await _get(http, f"{prefix}/workflow_templates/visionatrix/pencil_sketch.json")
    assert workflow["nodes"] == [] and workflow["links"] == [] and workflow["version"] == 0.4
    assert workflow["extra"]["visionatrix"] == {"flow": "pencil_sketch",
                                                "api_graph": services.flows.get("pencil_sketch").graph}
    card = await http.get(f"{prefix}/workflow_templates/visionatrix/pencil_sketch.svg")
    assert card.status == 200 and card.content_type == "image/svg+xml"


@pytest.mark.parametrize("name", ["nope.json", "pencil_sketch.png", "pencil_sketch", "..%2Fpencil_sketch.json",
                                  "%2E%2E.json"])
async def test_an_unknown_flow_template_is_a_json_404(http: TestClient, name: str) -> None:
    body = await _get(http, f"/comfy/api/workflow_templates/visionatrix/{name}", 404)
    assert body["error"] == "not_found"


async def test_without_official_templates_the_index_holds_only_our_flows(
        aiohttp_client: Any, services: Services) -> None:
    app = create_app(services)
    app[templates.LIBRARY] = templates.TemplateLibrary(dirs=[])
    http = await aiohttp_client(app)
    index = await _get(http, "/comfy/templates/index.json")
    assert [category["moduleName"] for category in index] == [templates.MODULE]
    assert index[0]["templates"], "our flows are listed"
    assert await _get(http, "/comfy/templates/index_logo.json") == {}
    await _get(http, "/comfy/templates/index.fr.json", 404)
    await _get(http, "/comfy/templates/t2i.json", 404)


@pytest.mark.skipif(importlib.util.find_spec(OFFICIAL_PACKAGE) is None, reason=f"{OFFICIAL_PACKAGE} not installed")
async def test_the_installed_official_templates_are_found_and_marked(aiohttp_client: Any, services: Services) -> None:
    http = await aiohttp_client(create_app(services))
    index = await _get(http, "/comfy/templates/index.json")
    official = [template for category in _category(index, "default") for template in category["templates"]]
    assert len(official) > 100
    assert all("vixMissingNodeTypes" in template for template in official)
    # the API-node templates need nodes this server has not got
    assert any(template["vixMissingNodeTypes"] for template in official)
    name = official[0]["name"]
    workflow = await _get(http, f"/comfy/templates/{name}.json")
    assert isinstance(workflow["nodes"], list)
