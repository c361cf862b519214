"""ComfyUI's node catalogue against a real server: ``object_info`` and ``object_info/{node_class}``, with the
input-image choices read at request time from our ComfyUI input folder."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from visionatrix.models.folders import ModelFolders
from visionatrix.nodes import context
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.server.app import create_app
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


PICKER_PACK = '''
import folder_paths


class VixTestModelPicker:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": (folder_paths.get_filename_list("upscale_models"),)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "pick"
    CATEGORY = "test"

    def pick(self, model_name):
        return (folder_paths.get_full_path("upscale_models", model_name),)


NODE_CLASS_MAPPINGS = {"VixTestModelPicker": VixTestModelPicker}
'''


async def test_a_packs_model_choices_are_the_files_of_the_model_folder(
        aiohttp_client: Any, services: Services, tmp_path: Path) -> None:
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "vix_test_picker.py").write_text(PICKER_PACK)
    registry = NodeRegistry()
    registry.load_packs([packs])
    assert not registry.failures, registry.failures
    assert services.models_dir is not None
    upscale = services.models_dir / "upscale_models"
    (upscale / "sub").mkdir(parents=True)
    (upscale / "4x.pth").write_bytes(b"x")
    (upscale / "sub" / "2x.safetensors").write_bytes(b"x")
    (upscale / "readme.txt").write_bytes(b"x")
    collection = tmp_path / "a1111" / "ESRGAN"
    collection.mkdir(parents=True)
    (collection / "RealESRGAN_x4plus.pth").write_bytes(b"x")
    folders = ModelFolders(services.models_dir, {"upscale_models": [collection]})
    http = await aiohttp_client(create_app(dataclasses.replace(services, registry=registry, model_folders=folders)))
    for path in ("/object_info", "/object_info/VixTestModelPicker"):
        info = await _catalogue(http, path)
        assert info["VixTestModelPicker"]["input"]["required"]["model_name"][0] == [
            "4x.pth", "RealESRGAN_x4plus.pth", "sub/2x.safetensors"]
    (upscale / "new.pt").write_bytes(b"x")
    info = await _catalogue(http, "/object_info/VixTestModelPicker")
    assert "new.pt" in info["VixTestModelPicker"]["input"]["required"]["model_name"][0]
