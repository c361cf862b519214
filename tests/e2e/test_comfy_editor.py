"""The official ComfyUI graph editor (the ``comfyui-frontend-package`` wheel, served at ``/comfy/``) in headless
Chromium against a real ``python -m visionatrix run``: it boots, lists our nodes, loads a bundled flow, queues it and
shows the output image — with no API call of the editor failing on the way.

Chromium is Debian's (``.ci/browser-up`` installs it); Playwright never downloads a browser here."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.async_api import ConsoleMessage, Page, Request, Response, WebSocket, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.service import ROOT, running_service

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SCREENSHOT = ROOT / "test-artifacts" / "comfy_editor.png"
FLOW = ROOT / "flows" / "pencil_sketch.json"
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"
BOOT_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 45_000
SHOW_TIMEOUT_MS = 10_000
# The SaveImage node's output, drawn by the editor as an <img> loaded from /view.
SHOWN_OUTPUT_JS = """(name) => [...document.querySelectorAll('img')].some(
    img => img.src.includes('filename=' + encodeURIComponent(name)) && img.complete && img.naturalWidth > 0)"""

# Paths (under the service) whose 404 the editor expects and tolerates (comfyui_api.md §1.2 and §1.7); any other
# answer >= 400, or a 404 anywhere else, fails the test.
OPTIONAL_404 = {
    "/comfy/api/userdata/user.css": "the user's optional stylesheet, linked from index.html (§1.7 step 4)",
    "/comfy/user.css": "the legacy optional stylesheet, linked from index.html (§1.7 step 4)",
    "/comfy/api/userdata/comfy.templates.json": "the user's optional template list (§1.7 step 4)",
    "/comfy/api/userdata": "`?dir=workflows|subgraphs` before the user saved any: the editor maps 404 to [] (§1.2)",
    "/comfy/templates/index.json": "core workflow templates are not served; the editor logs it and shows none (§1.2)",
    "/comfy/templates/index_logo.json": "the logos of those core templates, fetched beside index.json",
}
# Console errors the editor logs for the tolerated 404s above (each failed request is checked on its own).
TOLERATED_CONSOLE_ERRORS = (
    re.compile(r"^Failed to load resource: "),
    re.compile(r"^Error loading core workflow templates: AxiosError: Request failed with status code 404"),
)


@dataclass
class Traffic:
    """What the page did with the service: failed answers and requests, console errors, uncaught errors."""

    origin: str
    failures: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    socket_frames: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("websocket", self._on_websocket)

    def _on_websocket(self, socket: WebSocket) -> None:
        """Keeps the start of each text frame the editor gets: what a run that never shows its image was told."""
        socket.on("framereceived", lambda frame: self.socket_frames.append(frame[:120]) if isinstance(frame, str)
                  else None)

    def _ours(self, url: str) -> bool:
        return url.startswith(self.origin + "/")

    def _on_response(self, response: Response) -> None:
        if not self._ours(response.url) or response.status < 400:
            return
        path = urlsplit(response.url).path
        if response.status == 404 and path in OPTIONAL_404:
            return
        self.failures.append(f"{response.status} {response.request.method} {response.url}")

    def _on_request_failed(self, request: Request) -> None:
        if not self._ours(request.url) or urlsplit(request.url).path in OPTIONAL_404:
            return
        # The editor drops the bodies of its fire-and-forget setting writes; Chromium then reports the finished
        # request as aborted. An answer below 400 already arrived: that is not a failure.
        if request.failure == "net::ERR_ABORTED" and request.method == "POST" and "/api/settings/" in request.url:
            return
        self.failures.append(f"{request.method} {request.url}: {request.failure}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in TOLERATED_CONSOLE_ERRORS):
            self.console_errors.append(message.text)

    def report(self) -> str:
        return (f"failed requests: {self.failures}\nconsole errors: {self.console_errors}\n"
                f"page errors: {self.page_errors}")


async def upload_sample(page: Page, url: str) -> str:
    """``flows/examples/sample.jpg`` into the editor's input folder; the LoadImage value naming it."""
    answer = await page.request.post(f"{url}/comfy/api/upload/image", multipart={
        "image": {"name": "sample.jpg", "mimeType": "image/jpeg", "buffer": SAMPLE.read_bytes()}})
    assert answer.status == 200, f"POST /upload/image: {answer.status} {await answer.text()}"
    body = await answer.json()
    return f"{body['subfolder']}/{body['name']}" if body["subfolder"] else str(body["name"])


async def queue_from_editor(page: Page, url: str, traffic: Traffic) -> tuple[str, Response]:
    """Queues the loaded graph the way the Run button does; the prompt id and the output image's ``/view`` answer."""
    async with page.expect_response(lambda r: "/api/prompt" in r.url and r.request.method == "POST",
                                    timeout=RUN_TIMEOUT_MS) as posted:
        viewed = asyncio.ensure_future(page.wait_for_event(
            "response", lambda r: "/view?" in r.url and "type=output" in r.url, timeout=RUN_TIMEOUT_MS))
        await page.evaluate("() => window.app.queuePrompt(0, 1)")
    answer = await posted.value
    body: dict[str, Any] = await answer.json()
    assert answer.status == 200, f"POST /api/prompt: {answer.status} {body}"
    prompt_id = str(body["prompt_id"])
    try:
        return prompt_id, await viewed
    except PlaywrightTimeoutError as error:
        history = await (await page.request.get(f"{url}/history/{prompt_id}")).text()
        raise AssertionError(f"no /view of an output within {RUN_TIMEOUT_MS} ms of queueing {prompt_id}\n"
                             f"history: {history}\nsocket frames: {traffic.socket_frames}\n"
                             f"{traffic.report()}") from error


async def show_whole_graph(page: Page) -> None:
    """Closes the templates dialog a new user gets over the graph and zooms the graph to fit: the editor draws (and
    fetches) a node's output image only while the node is on screen."""
    await page.keyboard.press("Escape")
    await page.locator(".p-dialog-mask").wait_for(state="detached", timeout=5_000)
    await page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    await page.wait_for_function("() => window.app.canvas.ds.scale < 0.95", timeout=5_000)
    await page.wait_for_timeout(500)  # the zoom is animated


def distinct_colours(path: Path) -> int:
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


async def test_the_official_editor_runs_a_bundled_flow_on_our_backend(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run ./.ci/browser-up"
    with running_service(tmp_path) as service:
        traffic = Traffic(service.url)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 900})
                traffic.watch(page)
                # Before the boot, so that LoadImage's list in /object_info already holds it.
                sample = await upload_sample(page, service.url)
                await page.goto(f"{service.url}/comfy/")
                try:
                    await page.wait_for_function("() => window.app?.canvas && window.app?.graph && "
                                                 "Object.keys(window.LiteGraph?.registered_node_types ?? {}).length",
                                                 timeout=BOOT_TIMEOUT_MS)
                except Exception as error:
                    raise AssertionError(f"the editor did not boot in {BOOT_TIMEOUT_MS} ms\n{traffic.report()}") \
                        from error

                wanted = ["SaveImage", "LoadImage", "ImagePencilSketch", "VixUiRangeInt"]
                registered = await page.evaluate("(names) => names.filter(n => n in LiteGraph.registered_node_types)",
                                                 wanted)
                assert registered == wanted, f"missing from the node library: {set(wanted) - set(registered)}"

                flow = json.loads(FLOW.read_text())
                flow["2"]["inputs"]["image"] = sample
                await page.evaluate("async (flow) => await window.app.loadApiJson(flow, 'pencil_sketch.json')", flow)
                loaded = await page.evaluate("() => window.app.graph.nodes.map(n => n.type).sort()")
                assert loaded == sorted(node["class_type"] for node in flow.values()), loaded

                await show_whole_graph(page)
                prompt_id, view = await queue_from_editor(page, service.url, traffic)
                assert view.status == 200, f"{view.url}: {view.status}"
                assert view.headers["content-type"].startswith("image/"), view.headers
                history = await (await page.request.get(f"{service.url}/history/{prompt_id}")).json()
                assert history[prompt_id]["status"]["completed"], history
                [image] = history[prompt_id]["outputs"]["7"]["images"]
                assert image["filename"] in view.url, (image, view.url)
                try:
                    await page.wait_for_function(SHOWN_OUTPUT_JS, arg=image["filename"], timeout=SHOW_TIMEOUT_MS)
                except Exception as error:
                    raise AssertionError(f"the editor did not show {image} in {SHOW_TIMEOUT_MS} ms") from error

                flagged = await page.evaluate("() => window.app.graph.nodes.filter(n => n.has_errors).map(n => n.type)")
                assert not flagged, f"the editor flags these nodes of the loaded flow: {flagged}"
                if await page.locator(".p-dialog-mask").count():  # a dialog came back over the graph
                    await page.keyboard.press("Escape")
                    await page.locator(".p-dialog-mask").wait_for(state="detached", timeout=5_000)
                SCREENSHOT.parent.mkdir(exist_ok=True)
                await page.screenshot(path=str(SCREENSHOT))
            finally:
                await browser.close()
        assert distinct_colours(SCREENSHOT) > 50, f"{SCREENSHOT} is blank"
        assert not traffic.page_errors and not traffic.console_errors, traffic.report()
        assert not traffic.failures, traffic.report()


async def test_open_in_editor_loads_an_installed_flow_by_name(tmp_path: Path) -> None:
    """``comfy/?vix_flow=<name>`` (our web UI's "Open in editor"): our editor extension loads the flow's graph."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run ./.ci/browser-up"
    expected = sorted(node["class_type"] for node in json.loads(FLOW.read_text()).values())
    with running_service(tmp_path) as service:
        traffic = Traffic(service.url)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                       args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                traffic.watch(page)
                await page.goto(f"{service.url}/comfy/?vix_flow=pencil_sketch")
                try:
                    await page.wait_for_function(
                        "(n) => window.app?.graph?.nodes?.length === n", arg=len(expected), timeout=BOOT_TIMEOUT_MS)
                except PlaywrightTimeoutError as error:
                    raise AssertionError(f"the flow was not loaded\n{traffic.report()}") from error
                await page.wait_for_timeout(1_000)  # nothing the editor restores afterwards replaces it
                loaded = await page.evaluate("() => window.app.graph.nodes.map(n => n.type).sort()")
                assert loaded == expected
                assert "vix_flow" not in page.url, "the query is dropped, so a reload keeps the user's edits"
            finally:
                await browser.close()
        assert not traffic.page_errors, traffic.report()
        assert not traffic.failures, traffic.report()
