"""The two bundled SDXL flows in our web UI (headless Chromium, a real DEFAULT-mode service, a tiny random-weight
SDXL checkpoint under the catalog's file name): their cards, their generated forms (text, sliders, the optional
mask upload, the advanced section), a run from each form to its result."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser import chromium
from tests.e2e.service import ROOT, Service, running_service
from tests.e2e.test_web_ui import Watch, open_page, screenshot
from tests.flow_models import fixture_file

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"
CHECKPOINT = "RealVisXL_V5.0_fp16.safetensors"
RUN_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("web_sdxl")
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "checkpoints" / CHECKPOINT).hardlink_to(fixture_file(root / "fixtures", "sdxl"))
    env = {"VIX_FLOWS_DIRS": str(ROOT / "flows"), "VIX_MODELS_DIR": str(root / "models"), "VIX_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with running_service(root, env) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def _queue_and_fetch(page: Page, url: str) -> tuple[int, np.ndarray]:
    """Presses Queue, follows the task to its end in the queue page, returns the task id and its image."""
    await page.get_by_role("button", name="Queue").click()
    queued = page.get_by_role("status").filter(has_text="Queued task #")
    await expect(queued).to_be_visible()
    task_id = int(re.search(r"#(\d+)", await queued.inner_text()).group(1))  # type: ignore[union-attr]
    await queued.get_by_role("link", name="See it in the queue").click()
    row = page.locator(f"#task-{task_id}")
    await expect(row).to_have_attribute("data-status", "finished", timeout=RUN_TIMEOUT_MS)
    await expect(page.get_by_role("button", name=re.compile(rf"of task {task_id} full size"))).to_be_visible()
    task = await (await page.request.get(f"{url}/vapi/tasks/{task_id}")).json()
    (output,) = task["outputs"]
    answer = await page.request.get(f"{url}/{output['url'].lstrip('/')}")
    assert answer.status == 200, answer
    with Image.open(io.BytesIO(await answer.body())) as image:
        return task_id, np.asarray(image.convert("RGB")).astype(np.int16)


async def test_text_to_image_runs_from_its_form(service: Service, browser: Browser) -> None:
    watch = Watch(service.url)
    page = await open_page(browser, watch, f"{service.url}/")
    card = page.locator("article.card[data-flow=sdxl_text_to_image]")
    await expect(card).to_contain_text("Text to image (SDXL)")
    await card.get_by_role("link", name="Run Text to image (SDXL)").click()
    await expect(page).to_have_url(re.compile(r"#/run/sdxl_text_to_image$"))
    await page.get_by_label("Prompt (required)", exact=True).fill("a lighthouse at dusk, (oil painting:1.2)")
    await page.get_by_text("Optional (3)").click()
    await expect(page.get_by_label("Negative prompt")).to_have_value(re.compile("^blurry"))
    await page.get_by_label("Width, exact value").fill("320")
    await page.get_by_label("Height, exact value").fill("256")
    await expect(page.get_by_role("slider", name="Width")).to_have_value("320")
    await page.get_by_text("Advanced (3)").click()
    await page.get_by_label("Steps, exact value").fill("2")
    await expect(page.get_by_label("Sampler")).to_have_value("dpmpp_2m")
    await page.get_by_label("Sampler").select_option("euler")
    await screenshot(page, "run_sdxl_text_to_image")
    _task_id, image = await _queue_and_fetch(page, service.url)
    assert image.shape == (256, 320, 3)
    assert image.std() > 1.0
    watch.check()


async def test_image_to_image_with_a_mask_runs_from_its_form(service: Service, browser: Browser,
                                                              tmp_path: Path) -> None:
    with Image.open(SAMPLE) as source:
        original = np.asarray(source.convert("RGB")).astype(np.int16)
        mask = Image.new("RGB", source.size, "black")
        mask.paste((255, 255, 255), (0, 0, source.width // 2, source.height))
    mask_path = tmp_path / "mask.png"
    mask.save(mask_path)
    watch = Watch(service.url)
    page = await open_page(browser, watch, f"{service.url}/#/run/sdxl_image_to_image")
    await expect(page.get_by_role("heading", name="Image to image (SDXL)")).to_be_visible()
    await page.get_by_label("Image (required)", exact=True).set_input_files(str(SAMPLE))
    await page.get_by_label("Prompt (required)", exact=True).fill("a watercolour painting")
    await page.get_by_text("Optional (3)").click()
    await page.get_by_label("Mask (white = redraw)").set_input_files(str(mask_path))
    await page.wait_for_function("() => [...document.querySelectorAll('.drop-preview')]"
                                 ".filter(i => i.naturalWidth > 0).length === 2")
    await page.get_by_label("Strength, exact value", exact=True).fill("0.8")
    await page.get_by_text("Advanced (3)").click()
    await page.get_by_label("Steps, exact value").fill("2")
    await screenshot(page, "run_sdxl_image_to_image")
    _task_id, image = await _queue_and_fetch(page, service.url)
    assert image.shape == original.shape
    half = original.shape[1] // 2
    assert np.array_equal(image[:, half:], original[:, half:]), "a pixel outside the mask changed"
    assert np.abs(image[:, :half] - original[:, :half]).mean() > 5
    watch.check()
