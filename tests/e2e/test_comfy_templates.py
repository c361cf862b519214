"""The official editor's Templates dialog against a real ``python -m visionatrix run``: it lists our installed flows
(the ``Installed flows`` category) and clicking one loads the flow's nodes into the graph
(``visionatrix/server/comfy/templates.py`` and the editor extension ``flow_templates.js``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.browser import chromium
from tests.e2e.service import ROOT, running_service
from tests.e2e.test_comfy_editor import BOOT_TIMEOUT_MS, Traffic

pytestmark = pytest.mark.slow

FLOW = ROOT / "flows" / "pencil_sketch.json"
DIALOG_TIMEOUT_MS = 15_000


async def test_the_templates_dialog_lists_our_flows_and_opens_one_as_its_graph(tmp_path: Path) -> None:
    expected = sorted(node["class_type"] for node in json.loads(FLOW.read_text()).values())
    with running_service(tmp_path) as service:
        traffic = Traffic(service.url)
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            traffic.watch(page)
            await page.goto(f"{service.url}/comfy/")
            # A new user's editor opens on the Templates dialog.
            category = page.get_by_text("Installed flows", exact=True)
            try:
                await category.wait_for(timeout=BOOT_TIMEOUT_MS)
            except PlaywrightTimeoutError as error:
                raise AssertionError(f"no 'Installed flows' in the Templates dialog\n{traffic.report()}") from error
            await category.click()
            for title in ("Pencil sketch", "Colour grade", "Upscale with a model"):
                await page.get_by_text(title, exact=True).first.wait_for(timeout=DIALOG_TIMEOUT_MS)
            await page.get_by_text("Pencil sketch", exact=True).first.click()
            try:
                await page.wait_for_function("(n) => window.app?.graph?.nodes?.length === n", arg=len(expected),
                                             timeout=DIALOG_TIMEOUT_MS)
            except PlaywrightTimeoutError as error:
                raise AssertionError(f"the flow's graph was not loaded\n{traffic.report()}") from error
            loaded = await page.evaluate("() => window.app.graph.nodes.map(n => n.type).sort()")
            assert loaded == expected
            flagged = await page.evaluate("() => window.app.graph.nodes.filter(n => n.has_errors).map(n => n.type)")
            assert not flagged, f"the editor flags these nodes of the opened flow: {flagged}"
            name = await page.evaluate("() => window.app.extensionManager.workflow.activeWorkflow?.filename")
            assert name == "pencil_sketch"
        assert not traffic.page_errors, traffic.report()
        assert not traffic.failures, traffic.report()
