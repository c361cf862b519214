"""ComfyUI's file routes against a real server: ``view``, ``upload/image``, ``upload/mask`` under every prefix,
the naming rules (nothing leaves its folder), the same-name rules, and refused uploads leaving nothing behind."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from tests.unit.server.conftest import MAX_UPLOAD_BYTES
from tests.unit.server.helpers import staging_leftovers
from visionatrix.server.comfy import paths
from visionatrix.server.comfy.paths import BadName, ComfyFolders, PathEscape
from visionatrix.server.services import Services

PREFIXES = ("", "/api", "/comfy", "/comfy/api")


def png(size: tuple[int, int] = (8, 6), color: tuple[int, ...] = (200, 30, 40), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")
    return out.getvalue()


def rgba_with_alpha_column(size: tuple[int, int] = (8, 6)) -> bytes:
    """An RGBA image whose first column is transparent (alpha 0) and the rest half-opaque (alpha 128)."""
    image = Image.new("RGBA", size, (10, 20, 30, 128))
    for y in range(size[1]):
        image.putpixel((0, y), (10, 20, 30, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def form(data: bytes | None, filename: str = "a.png", **fields: str) -> aiohttp.FormData:
    body = aiohttp.FormData(quote_fields=False, default_to_multipart=True)  # names as browsers send them
    if data is not None:
        body.add_field("image", data, filename=filename, content_type="image/png")
    for name, value in fields.items():
        body.add_field(name, value)
    return body


async def upload(http: TestClient, data: bytes | None, filename: str = "a.png", *, route: str = "/upload/image",
                 **fields: str) -> tuple[int, Any]:
    response = await http.post(route, data=form(data, filename, **fields))
    return response.status, await response.json()


def folders(services: Services) -> ComfyFolders:
    return ComfyFolders(services.storage.root)


def stored_files(services: Services) -> list[str]:
    """Every file (hidden ones included) under the input and temp folders."""
    found = []
    for base in (folders(services).input_dir, folders(services).temp_dir):
        if base.exists():
            found += sorted(str(p.relative_to(services.storage.root)) for p in base.rglob("*") if p.is_file())
    return found


def assert_nothing_left(services: Services) -> None:
    assert stored_files(services) == []
    assert staging_leftovers(services) == []


# -- upload then view --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_an_uploaded_image_is_viewable_under_every_prefix(http: TestClient, services: Services,
                                                                 prefix: str) -> None:
    data = png()
    status, reply = await upload(http, data, route=f"{prefix}/upload/image")
    assert status == 200 and reply == {"name": "a.png", "subfolder": "", "type": "input"}
    assert (folders(services).input_dir / "a.png").read_bytes() == data
    response = await http.get(f"{prefix}/view", params={"filename": "a.png", "type": "input"})
    assert response.status == 200 and await response.read() == data
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert 'filename="a.png"' in response.headers["Content-Disposition"]
    assert staging_leftovers(services) == []


async def test_an_upload_into_a_subfolder_is_viewed_and_resolved_as_a_loadimage_value(
        http: TestClient, services: Services) -> None:
    data = png()
    status, reply = await upload(http, data, "photo 1.png", subfolder="pasted/deep")
    assert status == 200 and reply == {"name": "photo 1.png", "subfolder": "pasted/deep", "type": "input"}
    response = await http.get("/api/view", params={"filename": "photo 1.png", "subfolder": "pasted/deep",
                                                   "type": "input"})
    assert response.status == 200 and await response.read() == data
    resolved = folders(services).resolve_annotated("pasted/deep/photo 1.png")
    assert resolved == folders(services).input_dir / "pasted" / "deep" / "photo 1.png"
    assert folders(services).input_images() == ["pasted/deep/photo 1.png"]


async def test_a_temp_upload_lands_in_the_temp_folder(http: TestClient, services: Services) -> None:
    status, reply = await upload(http, png(), type="temp")
    assert status == 200 and reply["type"] == "temp"
    assert (folders(services).temp_dir / "a.png").is_file()
    assert (await http.get("/view", params={"filename": "a.png", "type": "temp"})).status == 200


async def test_a_task_output_is_viewable_with_the_task_id_as_subfolder(http: TestClient, services: Services) -> None:
    (services.storage.output_dir(7) / "web_00001_.png").write_bytes(b"first")
    (services.storage.output_dir(7) / "masks").mkdir()
    (services.storage.output_dir(7) / "masks" / "m.png").write_bytes(b"second")
    response = await http.get("/view", params={"filename": "web_00001_.png", "subfolder": "7"})  # type: output
    assert response.status == 200 and await response.read() == b"first"
    ref = paths.output_ref(7, "masks/m.png")
    assert ref == {"filename": "m.png", "subfolder": "7/masks", "type": "output"}
    response = await http.get("/comfy/api/view", params=ref)
    assert response.status == 200 and await response.read() == b"second"
    assert paths.output_ref(7, "web_00001_.png") == {"filename": "web_00001_.png", "subfolder": "7",
                                                     "type": "output"}


async def test_an_annotated_filename_overrides_the_type(http: TestClient, services: Services) -> None:
    await upload(http, png())
    response = await http.get("/view", params={"filename": "a.png [input]", "type": "output"})
    assert response.status == 200
    assert paths.split_annotation("x.png [temp]") == ("x.png", "temp")
    assert paths.split_annotation("x.png") == ("x.png", None)


# -- preview and channel -----------------------------------------------------------------------------------------


async def _view_image(http: TestClient, **params: str) -> tuple[str, Image.Image]:
    response = await http.get("/view", params={"filename": "a.png", "type": "input", **params})
    assert response.status == 200, await response.text()
    image = Image.open(io.BytesIO(await response.read()))
    image.load()
    return response.headers["Content-Type"], image


async def test_previews_are_reencoded_and_jpeg_needs_the_rgb_channel(http: TestClient, services: Services) -> None:
    await upload(http, rgba_with_alpha_column())
    content_type, image = await _view_image(http, preview="webp;50")
    assert content_type == "image/webp" and image.format == "WEBP" and image.size == (8, 6)
    content_type, image = await _view_image(http, preview="jpeg;80", channel="rgb")
    assert content_type == "image/jpeg" and image.mode == "RGB"
    content_type, image = await _view_image(http, preview="jpeg;80")  # the default channel has alpha: webp
    assert content_type == "image/webp"
    content_type, image = await _view_image(http, preview="gif;x")
    assert content_type == "image/webp"


async def test_the_channel_parameter_drops_or_isolates_alpha(http: TestClient, services: Services) -> None:
    await upload(http, rgba_with_alpha_column())
    content_type, image = await _view_image(http, channel="rgb")
    assert content_type == "image/png" and image.mode == "RGB" and image.getpixel((3, 3)) == (10, 20, 30)
    content_type, image = await _view_image(http, channel="a")
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((3, 3))[3] == 128
    await upload(http, png(), "opaque.png")
    response = await http.get("/view", params={"filename": "opaque.png", "type": "input", "channel": "a"})
    alpha = Image.open(io.BytesIO(await response.read())).getchannel("A")
    assert alpha.getextrema() == (255, 255)


async def test_preview_of_a_file_that_is_not_an_image_is_a_400(http: TestClient, services: Services) -> None:
    (services.storage.output_dir(3) / "notes.png").write_bytes(b"not an image")
    response = await http.get("/view", params={"filename": "notes.png", "subfolder": "3", "preview": "webp;80"})
    assert response.status == 400


async def test_script_capable_files_are_forced_to_download(http: TestClient, services: Services) -> None:
    out = services.storage.output_dir(4)
    (out / "page.html").write_text("<script>alert(1)</script>")
    (out / "icon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    response = await http.get("/view", params={"filename": "page.html", "subfolder": "4"})
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    response = await http.get("/view", params={"filename": "icon.svg", "subfolder": "4"})
    assert response.headers["Content-Type"] == "application/octet-stream"
    response = await http.get("/view", params={"filename": "icon.svg", "subfolder": "4"},
                              headers={"Sec-Fetch-Dest": "image"})
    assert response.headers["Content-Type"] == "image/svg+xml"


# -- refused names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "status"), [
    ({"filename": "../secret.png"}, 400),
    ({"filename": "/etc/passwd"}, 400),
    ({"filename": "sub/../../x.png"}, 400),
    ({"filename": "a\\b.png"}, 400),
    ({"filename": "a\x00.png"}, 400),
    ({"filename": ".hidden.png"}, 400),
    ({"filename": ""}, 400),
    ({"type": "input"}, 400),
    ({"filename": "a.png", "type": "models"}, 400),
    ({"filename": "a.png", "channel": "cmyk"}, 400),
    ({"filename": "a.png", "subfolder": ".."}, 403),
    ({"filename": "a.png", "subfolder": "../comfy/input"}, 403),
    ({"filename": "a.png", "subfolder": "/etc"}, 403),
    ({"filename": "a.png", "subfolder": "..\\x"}, 403),
    ({"filename": "a.png", "subfolder": ".staging"}, 400),
    ({"filename": "missing.png", "type": "input"}, 404),
    ({"filename": "a.png", "subfolder": "99"}, 404),
])
async def test_view_refuses_bad_names_with_the_status_of_the_spec(http: TestClient, services: Services,
                                                                  params: dict[str, str], status: int) -> None:
    await upload(http, png())
    response = await http.get("/view", params=params)
    assert response.status == status
    body = await response.json()
    assert set(body) == {"error", "message", "details"} and body["message"]


async def test_a_symlink_leading_out_of_the_folder_is_refused(http: TestClient, services: Services,
                                                              tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(png())
    folders(services).input_dir.mkdir(parents=True)
    (folders(services).input_dir / "link").symlink_to(outside)
    (folders(services).input_dir / "file.png").symlink_to(outside / "x.png")
    response = await http.get("/view", params={"filename": "x.png", "subfolder": "link", "type": "input"})
    assert response.status == 403
    response = await http.get("/view", params={"filename": "file.png", "type": "input"})
    assert response.status == 403
    assert folders(services).input_images() == []


def test_the_name_rules_tell_an_escape_from_a_bad_name(tmp_path: Path) -> None:
    comfy = ComfyFolders(tmp_path)
    for bad in ("..", "a/../b", "/abs", "a\\b"):
        with pytest.raises(PathEscape):
            comfy.target("input", bad, "x.png")
    for bad in ("a//b", ".git", "a\x00", "a\nb", "x" * 256):
        with pytest.raises(BadName) as caught:
            comfy.target("input", "", bad)
        assert not isinstance(caught.value, PathEscape)
    assert comfy.target("output", "7", "a.png") == tmp_path / "output" / "7" / "a.png"
    assert comfy.target("temp", "", "p/a.png") == tmp_path / "comfy" / "temp" / "p" / "a.png"


# -- refused uploads leave nothing behind ------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "filename", "fields", "status"), [
    (b"plain text, not an image", "a.png", {}, 400),
    (png(), "../a.png", {}, 400),
    (png(), "/tmp/a.png", {}, 400),
    (png(), "sub/a.png", {}, 400),
    (png(), ".a.png", {}, 400),
    (png(), "a.png", {"subfolder": "../output"}, 400),
    (png(), "a.png", {"subfolder": "/abs"}, 400),
    (png(), "a.png", {"type": "output"}, 400),
    (png(), "a.png", {"type": "anything"}, 400),
    (png((1001, 1000)), "big.png", {}, 400),  # more pixels than max_image_pixels
    (None, "a.png", {"type": "input"}, 400),  # no file part
    (b"\x89PNG" + b"\x00" * (MAX_UPLOAD_BYTES + 1), "a.png", {}, 413),
])
async def test_a_refused_upload_leaves_nothing_behind(http: TestClient, services: Services, data: bytes | None,
                                                      filename: str, fields: dict[str, str], status: int) -> None:
    code, body = await upload(http, data, filename, **fields)
    assert code == status, body
    assert set(body) == {"error", "message", "details"}
    assert_nothing_left(services)
    assert not (services.storage.root / "output").exists() or not any((services.storage.root / "output").iterdir())


async def test_an_upload_that_is_not_multipart_is_refused(http: TestClient, services: Services) -> None:
    response = await http.post("/upload/image", data=png(), headers={"Content-Type": "image/png"})
    assert response.status == 415
    assert_nothing_left(services)


# -- same-name rules ---------------------------------------------------------------------------------------------


async def test_same_names_reuse_identical_content_and_number_different_content(http: TestClient,
                                                                             services: Services) -> None:
    red, green, blue = png(color=(255, 0, 0)), png(color=(0, 255, 0)), png(color=(0, 0, 255))
    assert (await upload(http, red))[1]["name"] == "a.png"
    assert (await upload(http, red))[1]["name"] == "a.png"
    assert (await upload(http, green))[1]["name"] == "a (1).png"
    assert (await upload(http, blue))[1]["name"] == "a (2).png"
    assert (await upload(http, green))[1]["name"] == "a (1).png"
    base = folders(services).input_dir
    assert sorted(p.name for p in base.iterdir()) == ["a (1).png", "a (2).png", "a.png"]
    assert (base / "a.png").read_bytes() == red and (base / "a (2).png").read_bytes() == blue
    assert (await upload(http, blue, overwrite="true"))[1]["name"] == "a.png"
    assert (base / "a.png").read_bytes() == blue
    assert staging_leftovers(services) == []


async def test_an_upload_into_a_subfolder_that_is_a_file_is_refused(http: TestClient, services: Services) -> None:
    await upload(http, png(), "taken")
    status, body = await upload(http, png(), "a.png", subfolder="taken/inner")
    assert status == 400 and body["error"] == "invalid_filename"
    assert stored_files(services) == ["comfy/input/taken"] and staging_leftovers(services) == []


# -- upload/mask -------------------------------------------------------------------------------------------------


async def test_a_mask_upload_writes_the_original_with_the_mask_alpha(http: TestClient, services: Services) -> None:
    await upload(http, png(color=(200, 30, 40)), "orig.png", subfolder="clipspace")
    ref = json.dumps({"filename": "orig.png", "subfolder": "clipspace", "type": "input"})
    status, reply = await upload(http, rgba_with_alpha_column(), "mask.png", route="/api/upload/mask",
                                 subfolder="clipspace", original_ref=ref)
    assert status == 200 and reply == {"name": "mask.png", "subfolder": "clipspace", "type": "input"}
    with Image.open(folders(services).input_dir / "clipspace" / "mask.png") as result:
        assert result.mode == "RGBA"
        assert result.getpixel((0, 0)) == (200, 30, 40, 0) and result.getpixel((4, 4)) == (200, 30, 40, 128)
    assert staging_leftovers(services) == []


async def test_a_mask_of_a_task_output_defaults_to_the_output_type(http: TestClient, services: Services) -> None:
    (services.storage.output_dir(5) / "out.png").write_bytes(png(color=(1, 2, 3)))
    ref = json.dumps({"filename": "out.png", "subfolder": "5"})
    status, reply = await upload(http, rgba_with_alpha_column(), "m.jpg", route="/upload/mask", original_ref=ref)
    assert status == 200 and reply["name"] == "m.png"
    with Image.open(folders(services).input_dir / "m.png") as result:
        assert result.getpixel((0, 0)) == (1, 2, 3, 0)


@pytest.mark.parametrize(("original_ref", "status"), [
    (None, 400),
    ("not json", 400),
    ("[1, 2]", 400),
    (json.dumps({"subfolder": "", "type": "input"}), 400),
    (json.dumps({"filename": "", "type": "input"}), 400),
    (json.dumps({"filename": "orig.png", "type": 3}), 400),
    (json.dumps({"filename": "../orig.png", "type": "input"}), 400),
    (json.dumps({"filename": "orig.png", "subfolder": "../..", "type": "input"}), 400),
    (json.dumps({"filename": "orig.png", "type": "nowhere"}), 400),
    (json.dumps({"filename": "gone.png", "type": "input"}), 404),
    (json.dumps({"filename": "small.png", "type": "input"}), 400),  # sizes differ
])
async def test_a_refused_mask_upload_leaves_nothing_behind(http: TestClient, services: Services,
                                                           original_ref: str | None, status: int) -> None:
    await upload(http, png(), "orig.png")
    await upload(http, png((3, 3)), "small.png")
    before = stored_files(services)
    fields = {} if original_ref is None else {"original_ref": original_ref}
    code, body = await upload(http, rgba_with_alpha_column(), "mask.png", route="/upload/mask", **fields)
    assert code == status, body
    assert set(body) == {"error", "message", "details"}
    assert stored_files(services) == before and staging_leftovers(services) == []
