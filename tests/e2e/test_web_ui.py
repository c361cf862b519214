"""Our web UI (``web/``, served at ``/``) in headless Chromium against a real ``python -m visionatrix run``: a flow run
from the form to its result (progress pushed by events, no polling), cancelling a running task, flows installed and
removed, a worker appearing live and restricted, the keyboard path, themes, the phone layout and a screenshot of
each page — with no page error, console error or unexpected failed API call on the way."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.async_api import (
    Browser,
    Page,
    Request,
    Response,
    WebSocketRoute,
    expect,
)

from tests.e2e.browser import PageWatch, chromium, distinct_colours
from tests.e2e.cluster import DATA, VixProcess, http_json, wait_until
from tests.e2e.service import ROOT, Service, running_service

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts"
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 375, "height": 812}
RUN_TIMEOUT_MS = 30_000
WORKER_TIMEOUT_MS = 45_000
SERVICE_ENV = {"VIX_FLOWS_DIRS": f"{ROOT / 'flows'};{DATA / 'flows'}", "VIX_NODES_DIRS": str(DATA / "nodes"),
               "VIX_DEVICE": "cpu"}


@dataclass
class Watch(PageWatch):
    """What the UI did: nothing may fail unless the test announced it with ``expect_failure``; every
    ``GET /vapi/tasks`` list request is kept (polling shows up there)."""

    expected: list[tuple[str, str, int]] = field(default_factory=list)
    task_list_requests: list[str] = field(default_factory=list)

    def expect_failure(self, method: str, path: str, status: int) -> None:
        """The next ``method path`` answering ``status`` is part of the test."""
        self.expected.append((method, path, status))

    def on_request(self, request: Request) -> None:
        if request.method == "GET" and urlsplit(request.url).path == "/vapi/tasks":
            self.task_list_requests.append(request.url)

    def tolerates_answer(self, response: Response) -> bool:
        key = (response.request.method, urlsplit(response.url).path, response.status)
        if key in self.expected:
            self.expected.remove(key)
            return True
        return False

    def tolerates_failure(self, request: Request) -> bool:
        # Leaving a page aborts its unfinished reads (and the images it was loading): that is not a failure.
        return request.method == "GET" and request.failure == "net::ERR_ABORTED"

    def events_of(self, kind: str, task_id: int | None = None) -> list[dict[str, object]]:
        events = []
        for frame in self.frames:
            event = json.loads(frame)
            if event.get("type") == kind and (task_id is None or event.get("task_id") == task_id):
                events.append(event)
        return events

    def check(self) -> None:
        report = f"{self.report()}\nexpected failures that did not happen: {self.expected}"
        assert not (self.failures or self.console_errors or self.page_errors or self.expected), report


def assert_not_blank(path: Path) -> None:
    """A screenshot with content: more than a handful of colours and no colour covering nearly all of it."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        pixels = rgb.width * rgb.height
    top = max((count for count, _ in colours), default=pixels)
    assert distinct_colours(path) > 20, f"{path} has {distinct_colours(path)} colours: blank?"
    assert top / pixels < 0.98, f"{path} is {top / pixels:.1%} one colour: blank?"


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.05)


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"web_{name}.png"
    await page.screenshot(path=str(path))
    assert_not_blank(path)
    return path


@pytest.fixture(scope="module")
def default_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """DEFAULT mode (server + in-process worker) with the bundled flows and the e2e flows and node pack."""
    with running_service(tmp_path_factory.mktemp("web_ui"), SERVICE_ENV) as service:
        yield service


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def open_page(browser: Browser, watch: Watch, url: str, viewport: dict[str, int] = DESKTOP) -> Page:
    page = watch.watch(await browser.new_page(viewport=viewport))
    await page.goto(url)
    await expect(page.locator("#live-state")).to_have_text("Live")
    return page


async def tab_to(page: Page, name: str, limit: int = 100) -> None:
    """Presses Tab until the focused element's accessible name (aria-label or text) is ``name``."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("() => document.activeElement?.getAttribute('aria-label') || "
                                      "document.activeElement?.textContent?.trim()")
        if focused == name:
            return
    raise AssertionError(f"{limit} presses of Tab never reached {name!r}")


async def test_a_flow_runs_from_the_form_to_its_result_with_pushed_progress(default_service: Service,
                                                                            browser: Browser) -> None:
    url = default_service.url
    watch = Watch(url)
    # A second tab on the queue before anything runs: it must follow the task through pushed events alone.
    watcher_watch = Watch(url)
    watcher = await open_page(browser, watcher_watch, f"{url}/#/queue")
    await expect(watcher.get_by_role("heading", name="Queue")).to_be_visible()
    page = await open_page(browser, watch, f"{url}/")
    await expect(page.locator("article.card")).not_to_have_count(0)
    card = page.locator("article.card[data-flow=web_resize_sharpen]")
    await expect(card).to_contain_text("None needed")
    [worker] = http_json(f"{url}/vapi/workers")["workers"]  # the in-process worker
    await expect(card.locator("[data-workers-of]")).to_have_text(worker["worker_id"])
    await expect(page.locator("#version")).to_have_text(re.compile(r"^v\d"))
    await screenshot(page, "flows")

    # Keyboard only: the skip link, then Tab to the flow's Run link and Enter.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    await page.keyboard.press("Enter")
    await tab_to(page, "Run Resize and sharpen for the web")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"#/run/web_resize_sharpen$"))
    await expect(page.get_by_role("heading", name="Resize and sharpen for the web")).to_be_focused()

    await page.get_by_label("Image").set_input_files(str(SAMPLE))
    await page.wait_for_function("() => document.querySelector('.drop-preview')?.naturalWidth > 0")
    await page.get_by_text("Optional (1)").click()
    width = page.get_by_label("Width (pixels), exact value")
    await width.fill("5000")
    await expect(page.get_by_role("slider", name="Width (pixels)")).to_have_value("4096")  # the slider's top

    # The server refuses 5000: its problem is shown under the field.
    watch.expect_failure("POST", "/vapi/tasks", 400)
    await page.get_by_role("button", name="Queue").click()
    problem = page.locator(".field-error:not([hidden])")
    await expect(problem).to_have_text("5000 is above the maximum 4096")
    await expect(width).to_have_attribute("aria-invalid", "true")
    await expect(width).to_have_attribute("aria-describedby", await problem.get_attribute("id") or "")

    # The slider by keyboard: 320 + one step (8) and back.
    await width.fill("320")
    slider = page.get_by_role("slider", name="Width (pixels)")
    await slider.focus()
    await page.keyboard.press("ArrowRight")
    await expect(width).to_have_value("328")
    await page.keyboard.press("ArrowLeft")
    await expect(width).to_have_value("320")
    await screenshot(page, "run")

    # Submit from the keyboard: Tab from the priority field to the Queue button, Enter.
    await page.get_by_label("Priority (higher runs first)").focus()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Queue")).to_be_focused()
    await page.keyboard.press("Enter")
    queued = page.get_by_role("status").filter(has_text="Queued task #")
    await expect(queued).to_be_visible()
    task_id = int(re.search(r"#(\d+)", await queued.inner_text()).group(1))  # type: ignore[union-attr]
    await expect(width).not_to_have_attribute("aria-invalid", "true")

    # The watching tab: the task appears, progresses and finishes with no list request after its first one.
    row = watcher.locator(f"#task-{task_id}")
    await expect(row).to_have_attribute("data-status", "finished", timeout=RUN_TIMEOUT_MS)
    await expect(row.locator(".progress-text")).to_have_text("100 %")
    await expect(row.get_by_role("progressbar", name=f"Progress of task {task_id}")).to_have_attribute("value", "100")
    assert len(watcher_watch.task_list_requests) == 1, watcher_watch.task_list_requests
    assert watcher_watch.events_of("task_queued", task_id) and watcher_watch.events_of("task_finished", task_id)
    await expect(watcher.get_by_role("button", name=re.compile(rf"of task {task_id} full size"))).to_be_visible()
    watcher_watch.check()
    await watcher.close()

    # The confirmation's link leads to the queue, where the result opens full size.
    await queued.get_by_role("link", name="See it in the queue").click()
    await expect(page).to_have_url(re.compile(rf"#/queue/{task_id}$"))
    await expect(page.locator(f"#task-{task_id}")).to_have_attribute("data-status", "finished")
    thumbnail = page.get_by_role("button", name=re.compile(rf"of task {task_id} full size"))
    await expect(thumbnail).to_be_visible()
    await page.wait_for_function("() => [...document.querySelectorAll('.gallery img')].every(i => i.naturalWidth)")
    await screenshot(page, "queue")
    await thumbnail.click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    await page.wait_for_function("() => document.querySelector('dialog .lightbox-image')?.naturalWidth > 0")
    download = dialog.get_by_role("link", name=re.compile(r"^Download "))
    href = await download.get_attribute("href")
    assert href and re.fullmatch(rf"vapi/tasks/{task_id}/files/output/.+\.png", href), href
    assert await download.get_attribute("download"), "the link does not download"
    answer = await page.request.get(f"{url}/{href}")
    assert answer.status == 200 and answer.headers["content-type"].startswith("image/"), answer.headers
    await screenshot(page, "result")

    # Input and output side by side: the comparison, moved by keyboard.
    await dialog.get_by_role("button", name="Compare with input").click()
    await expect(dialog.get_by_role("button", name="Compare with input")).to_have_attribute("aria-pressed", "true")
    await page.wait_for_function("() => [...document.querySelectorAll('dialog .compare img')]"
                                 ".every(i => i.naturalWidth > 0) && document.querySelectorAll('dialog .compare img')"
                                 ".length === 2")
    divider = dialog.get_by_role("slider", name="Divider between input and result")
    await divider.focus()
    await page.keyboard.press("ArrowRight")
    await expect(divider).to_have_value("51")
    assert await page.evaluate("() => document.querySelector('dialog .compare').style"
                               ".getPropertyValue('--position')") == "51%"
    await screenshot(page, "compare")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(thumbnail).to_be_focused()

    # Dark theme, remembered over a reload; then the phone layout.
    await page.get_by_label("Theme").select_option("dark")
    assert await page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(20, 23, 28)"
    await page.reload()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await expect(page.locator(f"#task-{task_id}")).to_be_visible()
    await page.wait_for_function("() => document.querySelector('.gallery img')?.naturalWidth > 0")
    await screenshot(page, "queue_dark")
    await page.get_by_label("Theme").select_option("system")
    await page.set_viewport_size(PHONE)
    await page.get_by_role("link", name="Flows", exact=True).click()
    await expect(page.locator("article.card")).not_to_have_count(0)
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "flows_phone")
    await page.get_by_role("link", name="Queue", exact=True).click()
    await expect(page.locator(f"#task-{task_id}")).to_be_visible()
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(page, "queue_phone")
    watch.check()


async def test_a_running_task_is_cancelled_and_deleted_from_the_queue(default_service: Service,
                                                                      browser: Browser) -> None:
    watch = Watch(default_service.url)
    page = watch.watch(await browser.new_page(viewport=DESKTOP))
    sockets: list[WebSocketRoute] = []  # the page's event sockets, passed through to the service

    async def pass_through(route: WebSocketRoute) -> None:
        route.connect_to_server()
        sockets.append(route)

    await page.route_web_socket(re.compile(r"/vapi/events$"), pass_through)
    await page.goto(f"{default_service.url}/#/run/e2e_slow")
    await page.get_by_text("Optional (2)").click()
    await page.get_by_label("Seconds, exact value").fill("20")
    await page.get_by_role("button", name="Queue").click()
    queued = page.get_by_role("status").filter(has_text="Queued task #")
    await expect(queued).to_be_visible()
    task_id = int(re.search(r"#(\d+)", await queued.inner_text()).group(1))  # type: ignore[union-attr]
    await queued.get_by_role("link", name="See it in the queue").click()

    row = page.locator(f"#task-{task_id}")
    await expect(row).to_have_attribute("data-status", "running", timeout=RUN_TIMEOUT_MS)
    await expect(row.locator(".current-node")).to_have_text(re.compile(r"^Running node \d+"))
    await page.get_by_role("button", name=f"Cancel task {task_id}").click()
    await expect(row).to_have_attribute("data-status", "cancelled", timeout=RUN_TIMEOUT_MS)
    await expect(row.get_by_role("button", name=f"Restart task {task_id}")).to_be_visible()

    await row.get_by_role("button", name=f"Delete task {task_id}").click()
    confirm = page.get_by_role("dialog", name=f"Delete task #{task_id} and its files?")
    await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    await confirm.get_by_role("button", name="Delete").click()
    await expect(row).to_have_count(0)
    answer = await page.request.get(f"{default_service.url}/vapi/tasks/{task_id}")
    assert answer.status == 404
    assert len(watch.task_list_requests) == 1, watch.task_list_requests

    # The event socket drops: the page reconnects and reads the list again (it may have missed events).
    await sockets[-1].close()
    await expect(page.locator("#live-state")).to_have_text("Reconnecting…")
    await expect(page.locator("#live-state")).to_have_text("Live")
    assert len(sockets) == 2
    await until(lambda: len(watch.task_list_requests) == 2, "the list read again after the reconnect")
    watch.check()


async def test_flows_are_uploaded_uninstalled_and_installed_again(default_service: Service, browser: Browser,
                                                                 tmp_path: Path) -> None:
    watch = Watch(default_service.url)
    page = await open_page(browser, watch, f"{default_service.url}/#/flows")
    flow = json.loads((DATA / "flows" / "e2e_red.json").read_text())
    title = 'Uploaded <img src=x onerror="window.injected = true"> flow'  # shown as text, never as markup
    flow["1"]["inputs"].update(name="e2e_uploaded", display_name=title)
    upload = tmp_path / "e2e_uploaded.json"
    upload.write_text(json.dumps(flow))
    await page.get_by_label(re.compile(r"^Flow file")).set_input_files(str(upload))
    card = page.locator("article.card[data-flow=e2e_uploaded]")
    await expect(card.get_by_role("heading")).to_have_text(title)
    await expect(card).to_contain_text("uploaded")
    assert await card.locator("img").count() == 0
    assert await page.evaluate("() => window.injected") is None

    await card.get_by_role("button", name=f"Delete {title}").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(card).to_have_count(0)

    watermark = page.locator("article.card[data-flow=watermark]")
    await watermark.get_by_role("button", name="Uninstall Watermark").click()
    await page.get_by_role("dialog").get_by_role("button", name="Uninstall").click()
    await expect(watermark).to_have_count(0)
    await page.get_by_role("button", name="Install Watermark").click()
    await expect(watermark).to_be_visible()
    assert (await page.request.get(f"{default_service.url}/vapi/flows/watermark")).status == 200
    watch.check()


async def test_a_worker_appears_live_and_its_flows_are_restricted(tmp_path: Path, browser: Browser) -> None:
    (tmp_path / "server").mkdir()
    with running_service(tmp_path / "server", {"VIX_MODE": "SERVER", "VIX_DEVICE": "cpu"}) as service:
        watch = Watch(service.url)
        page = await open_page(browser, watch, f"{service.url}/#/workers")
        await expect(page.get_by_text("No worker has reported in yet.")).to_be_visible()
        await page.evaluate("() => { window.notReloaded = true; }")
        worker = VixProcess("worker", tmp_path / "worker", {
            "VIX_MODE": "WORKER", "VIX_HOST": service.url, "VIX_WORKER_NAME": "ui-worker",
            "TASKS_FILES_DIR": str(tmp_path / "worker" / "vix_tasks_files")})
        try:
            row = page.locator("tr[data-worker-id=ui-worker]")
            await expect(row).to_be_visible(timeout=WORKER_TIMEOUT_MS)
            assert await page.evaluate("() => window.notReloaded === true"), "the page was reloaded"
            await expect(page.get_by_text("No worker has reported in yet.")).to_be_hidden()
            await expect(row).to_contain_text("WORKER")

            await row.get_by_text(re.compile(r"^Takes every installed flow")).click()
            await row.get_by_label("Take every installed flow").uncheck()
            for box in await row.locator("ul.checks input[type=checkbox]").all():
                if await box.input_value() != "pencil_sketch":
                    await box.uncheck()
            await screenshot(page, "workers")
            await row.get_by_role("button", name="Save").click()
            await expect(page.get_by_role("status").filter(has_text="ui-worker takes pencil_sketch.")).to_be_visible()
            await expect(row.get_by_text(re.compile(r"^Takes 1 of \d+ flows$"))).to_be_visible()

            def restricted() -> bool:
                workers = http_json(f"{service.url}/vapi/workers")["workers"]
                return any(w["worker_id"] == "ui-worker" and w["allowed_flows"] == ["pencil_sketch"] for w in workers)

            wait_until(restricted, 10, "allowed_flows of ui-worker", logs=[worker])
            await page.close()  # before the service stops: its socket would only try to reconnect
        finally:
            worker.stop()
        watch.check()
