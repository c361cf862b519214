"""The graph editor's pages at ``/comfy/`` (``visionatrix/server/comfy/frontend.py``): the installed wheel's
``index.html`` uncached, its static files confined to its folder, the API under ``/comfy/api`` still winning, and a
503 naming the package when the wheel is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from visionatrix.server.app import create_app
from visionatrix.server.comfy import frontend
from visionatrix.server.comfy.frontend import DISTRIBUTION, add_frontend_routes, find_static_dir
from visionatrix.server.services import Services


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<title>editor</title>")
    (static / "assets" / "app-1234.js").write_text("export {}")
    (static / "assets" / "style.css").write_text("body {}")
    (tmp_path / "secret.txt").write_text("outside")
    return static


async def _editor(aiohttp_client: Any, services: Services, *, static_dir: Path | None = None,
                  package: str | None = None) -> TestClient:
    """The whole app, its editor pages served from ``static_dir`` (or the wheel of ``package``)."""
    real = frontend.find_static_dir
    chosen = static_dir if static_dir is not None else real(package) if package is not None else real()
    frontend.find_static_dir = lambda *_: chosen  # type: ignore[assignment]
    try:
        app = create_app(services)
    finally:
        frontend.find_static_dir = real  # type: ignore[assignment]
    return await aiohttp_client(app)


async def test_the_installed_wheel_is_found_and_serves_its_index(aiohttp_client: Any, services: Services) -> None:
    static = find_static_dir()
    assert static is not None and (static / "index.html").is_file()
    http = await _editor(aiohttp_client, services)
    response = await http.get("/comfy/")
    assert response.status == 200 and response.content_type == "text/html"
    assert await response.read() == (static / "index.html").read_bytes()
    response = await http.get("/comfy/build-manifest.json")
    assert response.status == 200


@pytest.mark.parametrize("path", ["/comfy/", "/comfy/index.html"])
async def test_the_editor_page_is_never_cached(aiohttp_client: Any, services: Services, static_dir: Path,
                                               path: str) -> None:
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get(path)
    assert response.status == 200 and await response.text() == "<title>editor</title>"
    assert response.headers["Cache-Control"] == "no-store, must-revalidate"
    assert response.headers["Pragma"] == "no-cache" and response.headers["Expires"] == "0"


async def test_the_bare_mount_redirects_to_the_page_relatively_so_its_assets_resolve(
        aiohttp_client: Any, services: Services, static_dir: Path) -> None:
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get("/comfy?workflow=a", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "comfy/?workflow=a"
    response = await http.get("/comfy")
    assert response.status == 200 and str(response.url.path) == "/comfy/"
    assert await response.text() == "<title>editor</title>"


async def test_static_files_are_served_with_their_type(aiohttp_client: Any, services: Services,
                                                       static_dir: Path) -> None:
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get("/comfy/assets/app-1234.js")
    assert response.status == 200 and await response.text() == "export {}"
    assert "javascript" in response.content_type and response.headers["Cache-Control"] == "no-cache"
    response = await http.get("/comfy/assets/style.css")
    assert response.content_type == "text/css"


@pytest.mark.parametrize("path", ["/comfy/missing.js", "/comfy/assets", "/comfy/assets/", "/comfy/..%2Fsecret.txt",
                                  "/comfy/assets%2F..%2F..%2Fsecret.txt", "/comfy/%2Fetc%2Fpasswd",
                                  "/comfy/assets%5Cstyle.css", "/comfy/.%2Findex.html"])
async def test_anything_but_a_file_of_the_static_folder_is_404(aiohttp_client: Any, services: Services,
                                                                static_dir: Path, path: str) -> None:
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get(URL(path, encoded=True))
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "not_found" and "outside" not in await response.text()


async def test_a_control_character_in_the_path_is_refused_before_the_static_folder(
        aiohttp_client: Any, services: Services, static_dir: Path) -> None:
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get(URL("/comfy/a%00b", encoded=True))
    assert response.status == 400 and (await response.json())["error"] == "invalid_url"


async def test_a_symlink_out_of_the_static_folder_is_404(aiohttp_client: Any, services: Services,
                                                         static_dir: Path) -> None:
    (static_dir / "leak.txt").symlink_to(static_dir.parent / "secret.txt")
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    assert (await http.get("/comfy/leak.txt")).status == 404


async def test_the_api_under_comfy_wins_over_static_files(aiohttp_client: Any, services: Services,
                                                          static_dir: Path) -> None:
    (static_dir / "api").mkdir()
    (static_dir / "api" / "users").write_text("shadow")
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get("/comfy/api/users")
    assert await response.json() == {"storage": "server", "migrated": True}
    assert (await http.get("/comfy/features")).content_type == "application/json"


async def test_without_the_wheel_the_editor_answers_503_naming_the_package(aiohttp_client: Any,
                                                                           services: Services) -> None:
    http = await _editor(aiohttp_client, services, package="no_such_frontend_package")
    for path in ("/comfy/", "/comfy/assets/app.js"):
        response = await http.get(path)
        assert response.status == 503
        body = await response.json()
        assert body["error"] == "editor_not_installed" and DISTRIBUTION in body["message"]
    assert (await http.get("/comfy/api/users")).status == 200


async def test_routes_added_after_the_editor_still_win(aiohttp_client: Any, static_dir: Path) -> None:
    async def users(request: web.Request) -> web.Response:
        return web.json_response("api")

    app = web.Application()
    add_frontend_routes(app.router, static_dir=static_dir)
    app.router.add_get("/comfy/api/users", users)
    (static_dir / "api").mkdir()
    (static_dir / "api" / "users").write_text("shadow")
    http = await aiohttp_client(app)
    assert await (await http.get("/comfy/api/users")).json() == "api"


async def test_the_progress_favicon_frames_are_served_at_the_root_too(aiohttp_client: Any, services: Services,
                                                                       static_dir: Path) -> None:
    frames = static_dir / "assets" / "images" / "favicon_progress_16x16"
    frames.mkdir(parents=True)
    (frames / "frame_3.png").write_bytes(b"\x89PNG frame")
    http = await _editor(aiohttp_client, services, static_dir=static_dir)
    response = await http.get("/assets/images/favicon_progress_16x16/frame_3.png")
    assert response.status == 200 and await response.read() == b"\x89PNG frame"
    assert (await http.get("/assets/images/favicon_progress_16x16/frame_99.png")).status == 404
    assert (await http.get("/assets/images/favicon_progress_16x16/..%2F..%2Findex.html")).status == 404
    assert (await http.get("/assets/index.html")).status == 404  # only the frames, not the whole editor
