"""Health, the OpenAPI document, and the error shape of routing failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from visionatrix.client import VixClient
from visionatrix.server.app import create_app
from visionatrix.server.openapi import document
from visionatrix.server.services import Services


async def test_health_reports_ok_and_the_version(vix: VixClient) -> None:
    assert await vix.health() == {"status": "ok", "version": "9.9.9-test"}


def _app_operations(app: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue  # aiohttp answers HEAD for every GET by itself
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path.startswith("/vapi/"):
            operations.add((route.method.lower(), path))
    return operations


def _document_operations(doc: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items() for method in item}


def test_the_openapi_document_describes_exactly_the_app_routes(services: Services) -> None:
    app = create_app(services)
    assert _app_operations(app) == _document_operations(document("1"))
    assert len(_app_operations(app)) == 50


async def test_the_openapi_document_is_served_and_its_refs_resolve(http: TestClient) -> None:
    response = await http.get("/vapi/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "9.9.9-test"
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(doc)
    assert refs
    for ref in refs:
        _, section, kind, name = ref.split("/")
        assert name in doc[section][kind], ref
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}, (method, path)


async def test_an_unknown_route_is_a_json_404(http: TestClient) -> None:
    response = await http.get("/vapi/nothing/here")
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "not_found" and "/vapi/nothing/here" in body["message"]
    assert set(body) == {"error", "message", "details"}


async def test_a_task_id_that_is_not_a_number_is_a_json_404(http: TestClient) -> None:
    response = await http.get("/vapi/tasks/abc")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(http: TestClient) -> None:
    response = await http.put("/vapi/flows")
    assert response.status == 405
    body = await response.json()
    assert body["error"] == "method_not_allowed"
    assert set(body["details"]["allowed"]) >= {"GET", "POST"}
    assert "POST" in response.headers["Allow"]


async def test_the_web_page_is_served_at_the_root(http: TestClient) -> None:
    response = await http.get("/")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    text = await response.text()
    assert "<title>Visionatrix</title>" in text
    assert 'href="comfy/"' in text, "the page links to the graph editor"


async def test_the_web_assets_are_served_under_ui_and_confined_to_the_web_folder(
        aiohttp_client: Any, services: Services, tmp_path: Path) -> None:
    web_dir = tmp_path / "web"
    (web_dir / "pages").mkdir(parents=True)
    (web_dir / "index.html").write_text("<title>Visionatrix</title>")
    (web_dir / "pages" / "run.js").write_text("export const x = 1;")
    (web_dir / "style.css").write_text("body{}")
    (web_dir / ".secret").write_text("hidden")
    (tmp_path / "outside.js").write_text("outside")
    (web_dir / "link.js").symlink_to(tmp_path / "outside.js")
    services.web_dir = web_dir
    http = await aiohttp_client(create_app(services))

    script = await http.get("/ui/pages/run.js")
    assert script.status == 200 and await script.text() == "export const x = 1;"
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["Cache-Control"] == "no-cache"
    assert (await http.get("/ui/style.css")).headers["Content-Type"].startswith("text/css")
    for path in ("/ui/.secret", "/ui/link.js", "/ui/missing.js", "/ui/pages", "/ui/pages/../../outside.js",
                 "/ui/%2e%2e/outside.js", "/ui/pages%2F..%2F..%2Foutside.js"):
        response = await http.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"] == "not_found", path
