"""The graph editor's user data (``visionatrix/server/comfy/userdata.py``) over a real server: settings, the
``userdata`` file routes with ComfyUI's semantics, confinement of every path to ``<user_dir>/default`` and writes
that leave nothing behind when they fail."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.unit.server.conftest import MAX_UPLOAD_BYTES
from visionatrix.server.app import create_app
from visionatrix.server.comfy import PREFIXES
from visionatrix.server.services import Services


@pytest.fixture
def root(services: Services) -> Path:
    assert services.user_dir is not None
    return services.user_dir / "default"


def _url(path: str) -> URL:
    return URL(path, encoded=True)


async def _call(http: TestClient, method: str, path: str, status: int, data: Any = None) -> aiohttp.ClientResponse:
    response = await http.request(method, _url(path), data=data)
    assert response.status == status, await response.text()
    return response


async def _error(http: TestClient, method: str, path: str, status: int, data: Any = None) -> dict[str, Any]:
    body = await (await _call(http, method, path, status, data)).json()
    assert set(body) == {"error", "message", "details"} and body["message"]
    return dict(body)


def _files(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (temporary ``.part`` files included), relative, sorted."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")) if folder.exists() else []


# --- users and settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_users_says_single_user_server_storage(http: TestClient, prefix: str) -> None:
    response = await _call(http, "GET", f"{prefix}/users", 200)
    assert await response.json() == {"storage": "server", "migrated": True}


async def test_settings_start_empty_and_posts_merge_into_the_settings_file(http: TestClient, root: Path) -> None:
    assert await (await _call(http, "GET", "/api/settings", 200)).json() == {}
    await _call(http, "POST", "/api/settings", 200, json.dumps({"Comfy.A": 1, "Comfy.B": "x"}))
    await _call(http, "POST", "/settings", 200, json.dumps({"Comfy.B": "y", "Comfy.C": [1, 2]}))
    await _call(http, "POST", "/api/settings/Comfy.D", 200, json.dumps({"nested": True}))
    expected = {"Comfy.A": 1, "Comfy.B": "y", "Comfy.C": [1, 2], "Comfy.D": {"nested": True}}
    assert await (await _call(http, "GET", "/comfy/api/settings", 200)).json() == expected
    assert json.loads((root / "comfy.settings.json").read_text()) == expected
    assert await (await _call(http, "GET", "/api/settings/Comfy.B", 200)).json() == "y"
    assert await (await _call(http, "GET", "/api/settings/Comfy.Missing", 200)).json() is None
    assert _files(root) == ["comfy.settings.json"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "", "\xff"])
async def test_a_corrupt_or_foreign_settings_file_reads_as_empty(http: TestClient, root: Path, content: str) -> None:
    root.mkdir(parents=True)
    (root / "comfy.settings.json").write_text(content, encoding="latin-1")
    assert await (await _call(http, "GET", "/api/settings", 200)).json() == {}
    await _call(http, "POST", "/api/settings/Comfy.A", 200, "true")
    assert json.loads((root / "comfy.settings.json").read_text()) == {"Comfy.A": True}


@pytest.mark.parametrize(("path", "body", "code"), [
    ("/api/settings", "{broken", "invalid_json"),
    ("/api/settings", "[1, 2]", "invalid_settings"),
    ("/api/settings", '"text"', "invalid_settings"),
    ("/api/settings", b"\xff\xfe", "invalid_json"),
    ("/api/settings/Comfy.A", "", "invalid_json"),
    ("/api/settings/Comfy.A", "NaN", "invalid_json"),
    ("/api/settings/Comfy.A", '{"a": Infinity}', "invalid_json"),
])
async def test_a_bad_settings_body_is_400_and_leaves_the_file_untouched(
        http: TestClient, root: Path, path: str, body: Any, code: str) -> None:
    await _call(http, "POST", "/api/settings", 200, json.dumps({"Comfy.Keep": 1}))
    assert (await _error(http, "POST", path, 400, body))["error"] == code
    assert json.loads((root / "comfy.settings.json").read_text()) == {"Comfy.Keep": 1}
    assert _files(root) == ["comfy.settings.json"]


# --- listing ---------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(root: Path) -> Path:
    for name, content in {"workflows/a.json": b"{}", "workflows/sub/b.json": b"[1]", "workflows/c d.json": b"",
                          "user.css": b"body {}"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    (root / "workflows" / "empty").mkdir()
    return root


async def _list(http: TestClient, query: str) -> Any:
    return await (await _call(http, "GET", f"/api/userdata?{query}", 200)).json()


async def test_userdata_lists_files_of_a_folder_flat_or_recursive(http: TestClient, saved: Path) -> None:
    assert await _list(http, "dir=workflows") == ["a.json", "c d.json"]
    assert await _list(http, "dir=workflows&recurse=true&split=false") == ["a.json", "c d.json", "sub/b.json"]
    assert await _list(http, "dir=workflows&recurse=true&split=true") == [
        ["a.json", "a.json"], ["c d.json", "c d.json"], ["sub/b.json", "sub", "b.json"]]
    assert await _list(http, "dir=workflows%2Fsub") == ["b.json"]


async def test_userdata_full_info_gives_size_and_times_in_ms(http: TestClient, saved: Path) -> None:
    info = await _list(http, "dir=workflows&recurse=true&split=false&full_info=true")
    stat = (saved / "workflows" / "sub" / "b.json").stat()
    assert info[2] == {"path": "sub/b.json", "size": 3, "modified": int(stat.st_mtime * 1000),
                       "created": int(stat.st_ctime * 1000)}
    assert [item["path"] for item in info] == ["a.json", "c d.json", "sub/b.json"]


@pytest.mark.parametrize(("query", "status"), [
    ("", 400), ("dir=", 400), ("dir=..", 403), ("dir=workflows%2F..%2F..", 403), ("dir=%2Fetc", 403),
    ("dir=a%5Cb", 400), ("dir=a%00b", 400), ("dir=missing", 404), ("dir=user.css", 404),
    ("dir=workflows&recurse=maybe", 400),
])
async def test_userdata_listing_refuses_bad_folders(http: TestClient, saved: Path, query: str, status: int) -> None:
    await _error(http, "GET", f"/api/userdata?{query}", status)


async def test_userdata_v2_lists_one_folder_folders_first(http: TestClient, saved: Path) -> None:
    entries = await (await _call(http, "GET", "/api/v2/userdata?path=workflows", 200)).json()
    assert [(e["name"], e["path"], e["type"]) for e in entries] == [
        ("empty", "workflows/empty", "directory"), ("sub", "workflows/sub", "directory"),
        ("a.json", "workflows/a.json", "file"), ("c d.json", "workflows/c d.json", "file")]
    assert entries[2]["size"] == 2 and "size" not in entries[0]
    top = await (await _call(http, "GET", "/api/v2/userdata", 200)).json()
    assert [e["name"] for e in top] == ["workflows", "user.css"]
    await _error(http, "GET", "/api/v2/userdata?path=..", 403)
    await _error(http, "GET", "/api/v2/userdata?path=nothing", 404)


async def test_userdata_v2_of_a_fresh_user_folder_is_empty(http: TestClient) -> None:
    assert await (await _call(http, "GET", "/api/v2/userdata", 200)).json() == []


# --- one file --------------------------------------------------------------------------------------------------


async def test_a_user_file_is_fetched_by_its_encoded_path_as_an_attachment(http: TestClient, saved: Path) -> None:
    response = await _call(http, "GET", "/api/userdata/workflows%2Fsub%2Fb.json", 200)
    assert await response.read() == b"[1]"
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''b.json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = await _call(http, "GET", "/userdata/workflows%2Fc%20d.json", 200)
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''c%20d.json"


async def test_user_css_is_served_inline_as_css(http: TestClient, saved: Path) -> None:
    response = await _call(http, "GET", "/comfy/api/userdata/user.css", 200)
    assert response.content_type == "text/css" and response.headers["Content-Disposition"] == "inline"
    assert await response.read() == b"body {}"


@pytest.mark.parametrize(("file", "status"), [
    ("missing.json", 404), ("workflows", 404), ("..%2Fsecret", 403), ("workflows%2F..%2F..%2Fsecret", 403),
    ("%2Fetc%2Fpasswd", 403), ("%2E%2E%2Fsecret", 403), ("a%5Cb", 400), ("a%00b", 400), ("%2F", 403),
])
async def test_fetching_a_bad_user_path_is_refused(http: TestClient, saved: Path, file: str, status: int) -> None:
    (saved.parent / "secret").write_text("outside")
    await _error(http, "GET", f"/api/userdata/{file}", status)
    await _error(http, "DELETE", f"/api/userdata/{file}", status)


async def test_posting_a_user_file_writes_it_and_answers_its_path(http: TestClient, root: Path) -> None:
    response = await _call(http, "POST", "/api/userdata/workflows%2Fnew%2Fw.json", 200, b'{"nodes": []}')
    assert await response.json() == "workflows/new/w.json"
    assert (root / "workflows" / "new" / "w.json").read_bytes() == b'{"nodes": []}'
    response = await _call(http, "POST", "/api/userdata/workflows%2Fnew%2Fw.json?overwrite=true&full_info=true",
                           200, b"v2")
    info = await response.json()
    assert info["path"] == "workflows/new/w.json" and info["size"] == 2
    assert set(info) == {"path", "size", "modified", "created"}
    assert (root / "workflows" / "new" / "w.json").read_bytes() == b"v2"
    assert _files(root) == ["workflows", "workflows/new", "workflows/new/w.json"]


async def test_posting_over_an_existing_file_without_overwrite_is_409_and_keeps_it(
        http: TestClient, saved: Path) -> None:
    body = await _error(http, "POST", "/api/userdata/workflows%2Fa.json?overwrite=false", 409, b"replacement")
    assert body["error"] == "conflict"
    assert (saved / "workflows" / "a.json").read_bytes() == b"{}"
    await _error(http, "POST", "/api/userdata/workflows%2Fsub", 409, b"onto a folder")
    assert (saved / "workflows" / "sub").is_dir()
    assert not [name for name in _files(saved) if name.endswith(".part")]


@pytest.mark.parametrize(("file", "status"), [
    ("..%2Fescape.json", 403), ("workflows%2F..%2F..%2Fescape.json", 403), ("%2Ftmp%2Fescape.json", 403),
    ("a%5C..%5Cescape.json", 400), ("escape%00.json", 400), ("%2F", 403), ("x.json?overwrite=perhaps", 400),
])
async def test_posting_to_a_bad_path_writes_nothing_anywhere(
        http: TestClient, services: Services, file: str, status: int) -> None:
    assert services.user_dir is not None
    before = _files(services.user_dir.parent)
    await _error(http, "POST", f"/api/userdata/{file}", status, b"payload")
    assert _files(services.user_dir.parent) == before


async def test_a_symlink_out_of_the_user_folder_is_refused(http: TestClient, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text("no")
    root.mkdir(parents=True)
    os.symlink(outside, root / "link")
    await _error(http, "GET", "/api/userdata/link%2Fsecret.json", 403)
    await _error(http, "POST", "/api/userdata/link%2Fnew.json", 403, b"x")
    await _error(http, "GET", "/api/userdata?dir=link", 403)
    assert sorted(path.name for path in outside.iterdir()) == ["secret.json"]


async def test_a_body_over_the_upload_limit_is_413_and_leaves_nothing(http: TestClient, root: Path) -> None:
    big = b"x" * (MAX_UPLOAD_BYTES + 1)
    await _error(http, "POST", "/api/userdata/workflows%2Fdeep%2Fbig.json", 413, big)

    async def chunks() -> Any:  # no Content-Length: the limit is found while streaming
        for _ in range(4):
            yield b"y" * (MAX_UPLOAD_BYTES // 3)

    await _error(http, "POST", "/api/userdata/workflows%2Fdeep%2Fbig.json", 413, chunks())
    assert _files(root.parent) == []


async def test_posting_below_a_file_as_if_it_were_a_folder_is_409(http: TestClient, saved: Path) -> None:
    before = _files(saved)
    await _error(http, "POST", "/api/userdata/user.css%2Finner%2Fx.json", 409, b"x")
    assert _files(saved) == before


async def test_deleting_a_user_file_answers_204_then_404(http: TestClient, saved: Path) -> None:
    await _call(http, "DELETE", "/api/userdata/workflows%2Fa.json", 204)
    assert not (saved / "workflows" / "a.json").exists()
    await _error(http, "DELETE", "/api/userdata/workflows%2Fa.json", 404)
    await _error(http, "DELETE", "/api/userdata/workflows%2Fempty", 404)


async def test_moving_a_user_file_renames_it_into_new_folders(http: TestClient, saved: Path) -> None:
    response = await _call(http, "POST", "/api/userdata/workflows%2Fa.json/move/workflows%2Fnew%2Fz.json", 200)
    assert await response.json() == "workflows/new/z.json"
    assert (saved / "workflows" / "new" / "z.json").read_bytes() == b"{}"
    assert not (saved / "workflows" / "a.json").exists()
    response = await _call(http, "POST", "/api/userdata/workflows%2Fnew%2Fz.json/move/z.json?full_info=true", 200)
    assert (await response.json())["path"] == "z.json"


async def test_moving_onto_an_existing_file_without_overwrite_is_409_and_keeps_both(
        http: TestClient, saved: Path) -> None:
    await _error(http, "POST", "/api/userdata/workflows%2Fa.json/move/workflows%2Fsub%2Fb.json?overwrite=false", 409)
    assert (saved / "workflows" / "a.json").read_bytes() == b"{}"
    assert (saved / "workflows" / "sub" / "b.json").read_bytes() == b"[1]"
    await _call(http, "POST", "/api/userdata/workflows%2Fa.json/move/workflows%2Fsub%2Fb.json", 200)
    assert (saved / "workflows" / "sub" / "b.json").read_bytes() == b"{}"


@pytest.mark.parametrize(("source", "dest", "status"), [
    ("missing.json", "x.json", 404), ("workflows%2Fa.json", "..%2Fx.json", 403),
    ("workflows%2Fa.json", "%2Ftmp%2Fx.json", 403), ("..%2Fsecret", "x.json", 403),
    ("workflows%2Fa.json", "x%00.json", 400), ("workflows%2Fa.json", "workflows%2Fsub", 409),
    ("workflows%2Fa.json", "user.css%2Fx.json", 409),
])
async def test_a_bad_move_is_refused_and_changes_nothing(
        http: TestClient, saved: Path, source: str, dest: str, status: int) -> None:
    before = _files(saved.parent)
    await _error(http, "POST", f"/api/userdata/{source}/move/{dest}", status)
    assert _files(saved.parent) == before


async def test_without_a_user_folder_every_user_route_is_404(aiohttp_client: Any, services: Services) -> None:
    http = await aiohttp_client(create_app(dataclasses.replace(services, user_dir=None)))
    for method, path in [("GET", "/api/users"), ("GET", "/api/settings"), ("POST", "/api/settings"),
                         ("GET", "/api/settings/x"), ("GET", "/api/userdata?dir=workflows"),
                         ("GET", "/api/v2/userdata"), ("GET", "/api/userdata/a.json"), ("POST", "/api/userdata/a.json"),
                         ("DELETE", "/api/userdata/a.json"), ("POST", "/api/userdata/a.json/move/b.json")]:
        body = await _error(http, method, path, 404, b"{}")
        assert "VIX_USER_DIR" in body["message"]
