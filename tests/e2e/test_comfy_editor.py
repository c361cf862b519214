"""The official ComfyUI graph editor (the ``comfyui-frontend-package`` wheel, served at ``/comfy/``) in headless
Chromium against a real ``python -m visionatrix run``: it boots, lists our nodes, loads a bundled flow, queues it and
shows the output image — with no API call of the editor failing on the way.

Chromium is Debian's (``.ci/browser-up`` installs it); Playwright never downloads a browser here."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, Request, Response
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.browser import FAILED_RESOURCE, PageWatch, chromium, distinct_colours
from tests.e2e.service import ROOT, running_service

pytestmark = pytest.mark.slow

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
    FAILED_RESOURCE,
    re.compile(r"^Error loading core workflow templates: AxiosError: Request failed with status code 404"),
)


class Traffic(PageWatch):
    """What the editor did with the service; it may miss the optional files of ``OPTIONAL_404``."""

    @property
    def socket_frames(self) -> list[str]:
        """The start of each text frame the editor got: what a run that never shows its image was told."""
        return [frame[:120] for frame in self.frames]

    def tolerates_answer(self, response: Response) -> bool:
        return response.status == 404 and urlsplit(response.url).path in OPTIONAL_404

    def tolerates_failure(self, request: Request) -> bool:
        # The editor drops the bodies of its fire-and-forget setting writes; Chromium then reports the finished
        # request as aborted. An answer below 400 already arrived: that is not a failure.
        return urlsplit(request.url).path in OPTIONAL_404 or (
            request.failure == "net::ERR_ABORTED" and request.method == "POST" and "/api/settings/" in request.url)

    def tolerates_console(self, text: str) -> bool:
        return any(pattern.search(text) for pattern in TOLERATED_CONSOLE_ERRORS)


async def upload_sample(page: Page, url: str) -> str:
    """``flows/examples/sample.jpg`` into the editor's input folder; the LoadImage value naming it."""
    answer = await page.request.post(f"{url}/comfy/api/upload/image", multipart={
        "image": {"name": "sample.jpg", "mimeType": "image/jpeg", "buffer": SAMPLE.read_bytes()}})
    assert answer.status == 200, f"POST /upload/image: {answer.status} {await answer.text()}"
    body = await answer.json()
    return f"{body['subfolder']}/{body['name']}" if body["subfolder"] else str(body["name"])


async def queue_from_editor(page: Page, url: str, traffic: Traffic, run_timeout_ms: int = RUN_TIMEOUT_MS,
                            ) -> tuple[str, Response]:
    """Queues the loaded graph the way the Run button does; the prompt id and the output image's ``/view`` answer."""
    async with page.expect_response(lambda r: "/api/prompt" in r.url and r.request.method == "POST",
                                    timeout=RUN_TIMEOUT_MS) as posted:
        viewed = asyncio.ensure_future(page.wait_for_event(
            "response", lambda r: "/view?" in r.url and "type=output" in r.url, timeout=run_timeout_ms))
        await page.evaluate("() => window.app.queuePrompt(0, 1)")
    answer = await posted.value
    body: dict[str, Any] = await answer.json()
    assert answer.status == 200, f"POST /api/prompt: {answer.status} {body}"
    prompt_id = str(body["prompt_id"])
    try:
        return prompt_id, await viewed
    except PlaywrightTimeoutError as error:
        history = await (await page.request.get(f"{url}/history/{prompt_id}")).text()
        raise AssertionError(f"no /view of an output within {run_timeout_ms} ms of queueing {prompt_id}\n"
                             f"history: {history}\nsocket frames: {traffic.socket_frames[-20:]}\n"
                             f"{traffic.report()}") from error


async def show_whole_graph(page: Page) -> None:
    """Closes the templates dialog a new user gets over the graph and zooms the graph to fit: the editor draws (and
    fetches) a node's output image only while the node is on screen."""
    await page.keyboard.press("Escape")
    await page.locator(".p-dialog-mask").wait_for(state="detached", timeout=5_000)
    await page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    await page.wait_for_function("() => window.app.canvas.ds.scale < 0.95", timeout=5_000)
    await page.wait_for_timeout(500)  # the zoom is animated


async def test_the_official_editor_runs_a_bundled_flow_on_our_backend(tmp_path: Path) -> None:
    with running_service(tmp_path) as service:
        traffic = Traffic(service.url)
        async with chromium() as browser:
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
        assert distinct_colours(SCREENSHOT) > 50, f"{SCREENSHOT} is blank"
        assert not traffic.page_errors and not traffic.console_errors, traffic.report()
        assert not traffic.failures, traffic.report()


async def test_open_in_editor_loads_an_installed_flow_by_name(tmp_path: Path) -> None:
    """``comfy/?vix_flow=<name>`` (our web UI's "Open in editor"): our editor extension loads the flow's graph."""
    expected = sorted(node["class_type"] for node in json.loads(FLOW.read_text()).values())
    with running_service(tmp_path) as service:
        traffic = Traffic(service.url)
        async with chromium() as browser:
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
        assert not traffic.page_errors, traffic.report()
        assert not traffic.failures, traffic.report()
