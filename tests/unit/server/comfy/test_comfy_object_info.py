"""ComfyUI's node catalogue against a real server: ``object_info`` and ``object_info/{node_class}``, with the
input-image choices read at request time from our ComfyUI input folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from visionatrix.nodes import context
from visionatrix.server.comfy.object_info import catalogue, fill_image_choices
from visionatrix.server.comfy.paths import ComfyFolders
from visionatrix.server.services import Services


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


async def _upload(http: TestClient, name: str, subfolder: str = "") -> None:
    body = aiohttp.FormData()
    body.add_field("image", png(), filename=name, content_type="image/png")
    body.add_field("subfolder", subfolder)
    response = await http.post("/upload/image", data=body)
    assert response.status == 200, await response.text()


async def _catalogue(http: TestClient, path: str = "/object_info") -> dict[str, Any]:
    response = await http.get(path)
    assert response.status == 200
    return await response.json()


def _image_choices(info: dict[str, Any], node: str) -> list[str]:
    spec = info[node]["input"]["required"]["image"]
    assert spec[1]["image_upload"] is True
    return spec[0]


async def test_object_info_describes_every_registered_node(http: TestClient, services: Services) -> None:
    info = await _catalogue(http)
    assert sorted(info) == services.registry.names()
    load = info["LoadImage"]
    assert load["name"] == "LoadImage" and load["output"] == ["IMAGE", "MASK"]
    assert load["input_order"] == {"required": ["image"]}


@pytest.mark.parametrize("prefix", ["", "/api", "/comfy", "/comfy/api"])
async def test_the_image_choices_follow_uploads_without_caching(http: TestClient, services: Services,
                                                                prefix: str) -> None:
    assert _image_choices(await _catalogue(http, f"{prefix}/object_info"), "LoadImage") == []
    await _upload(http, "b.png")
    await _upload(http, "a.png", subfolder="pasted")
    info = await _catalogue(http, f"{prefix}/object_info")
    assert _image_choices(info, "LoadImage") == ["b.png", "pasted/a.png"]
    assert _image_choices(info, "LoadImageMask") == ["b.png", "pasted/a.png"]
    await _upload(http, "c.png")
    one = await _catalogue(http, f"{prefix}/object_info/LoadImage")
    assert list(one) == ["LoadImage"] and _image_choices(one, "LoadImage") == ["b.png", "c.png", "pasted/a.png"]


async def test_only_images_of_our_input_folder_are_offered(http: TestClient, services: Services, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a stray ./input folder of the working directory is not ours
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "stray.png").write_bytes(png())
    folder = ComfyFolders(services.storage.root).input_dir
    (folder / ".hidden").mkdir(parents=True)
    (folder / ".hidden" / "x.png").write_bytes(png())
    (folder / ".part.png").write_bytes(png())
    (folder / "notes.txt").write_text("not an image")
    (folder / "kept.webp").write_bytes(b"listed by its name")
    assert _image_choices(await _catalogue(http), "LoadImage") == ["kept.webp"]


async def test_an_unknown_node_class_is_an_empty_object(http: TestClient, services: Services) -> None:
    assert await _catalogue(http, "/object_info/NoSuchNode") == {}
    assert await _catalogue(http, "/api/object_info/No%2FSuch%20Node") == {}
    assert list(await _catalogue(http, "/api/object_info/LoadImageMask")) == ["LoadImageMask"]


def test_node_descriptions_are_built_in_the_context_of_our_comfy_folders(services: Services) -> None:
    def describe() -> dict[str, Any]:
        ctx = context.current()
        return {"Probe": {"dirs": [ctx.input_dir, ctx.output_dir, ctx.temp_dir]}}

    comfy = ComfyFolders(services.storage.root)
    assert catalogue(services, describe) == {"Probe": {"dirs": [comfy.input_dir, comfy.output_dir, comfy.temp_dir]}}


def test_fill_image_choices_handles_both_combo_shapes_and_respects_image_folder() -> None:
    node = {"input": {
        "required": {"legacy": [["old.png"], {"image_upload": True}],
                     "modern": ["COMBO", {"options": ["old.png"], "image_upload": True}],
                     "outputs": ["COMBO", {"options": ["o.png"], "image_upload": True, "image_folder": "output"}],
                     "plain": [["x", "y"], {}]},
        "optional": {"extra": [["old.png"], {"image_upload": True}]},
    }}
    fill_image_choices(node, ["new.png"])
    required = node["input"]["required"]
    assert required["legacy"][0] == ["new.png"] and required["modern"][1]["options"] == ["new.png"]
    assert required["outputs"][1]["options"] == ["o.png"] and required["plain"][0] == ["x", "y"]
    assert node["input"]["optional"]["extra"][0] == ["new.png"]
