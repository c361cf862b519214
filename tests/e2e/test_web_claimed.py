"""The Queue page in headless Chromium against a real ``python -m visionatrix run``: a task the busy in-process
worker holds ahead shows ``claimed`` (waiting on that worker; cancellable, not deletable), its cancel shows at once,
and the running task shows ``running`` — all from pushed events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, expect

from tests.e2e.browser import chromium
from tests.e2e.cluster import http_json
from tests.e2e.service import Service, running_service
from tests.e2e.test_web_ui import RUN_TIMEOUT_MS, SERVICE_ENV, Watch, open_page, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("web_claimed"), SERVICE_ENV) as started:
        yield started


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def test_a_task_held_ahead_shows_claimed_and_is_cancelled_at_once(service: Service, browser: Browser) -> None:
    watch = Watch(service.url)
    page = await open_page(browser, watch, f"{service.url}/#/queue")
    slow = {"flow": "e2e_slow", "params": {"seconds": 20}}
    [running] = http_json(f"{service.url}/vapi/tasks", "POST", slow)["task_ids"]
    running_row = page.locator(f"#task-{running}")
    await expect(running_row).to_have_attribute("data-status", "running", timeout=RUN_TIMEOUT_MS)
    [ahead] = http_json(f"{service.url}/vapi/tasks", "POST", slow)["task_ids"]

    row = page.locator(f"#task-{ahead}")
    await expect(row).to_have_attribute("data-status", "claimed", timeout=RUN_TIMEOUT_MS)
    await expect(row.locator(".badge")).to_have_text("claimed")
    await expect(row.locator(".claimed-note")).to_have_text(re.compile(r"^Waiting on worker \S+"))
    await expect(row.get_by_role("button", name=f"Delete task {ahead}")).to_have_count(0)
    await expect(running_row).to_have_attribute("data-status", "running")
    shown = http_json(f"{service.url}/vapi/tasks/{ahead}")
    assert (shown["status"], shown["started_at"]) == ("claimed", None)
    await screenshot(page, "queue_claimed")

    await row.get_by_role("button", name=f"Cancel task {ahead}").click()
    await expect(row).to_have_attribute("data-status", "cancelled", timeout=2_000)  # not after the 20 s run
    await expect(running_row).to_have_attribute("data-status", "running")
    assert http_json(f"{service.url}/vapi/tasks/{ahead}")["started_at"] is None, "it never ran"

    await running_row.get_by_role("button", name=f"Cancel task {running}").click()
    await expect(running_row).to_have_attribute("data-status", "cancelled", timeout=RUN_TIMEOUT_MS)
    await page.close()
    watch.check()
