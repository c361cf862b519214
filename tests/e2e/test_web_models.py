"""The web UI's Models page and the flows' "download missing models", in headless Chromium against a real
``python -m visionatrix run`` whose models catalog points at a local model server: a slow download's bar moves on
pushed events (no polling) and is cancelled, a fast one installs and is removed, a failed one shows its error, gated
models say which token they need, and a flow whose model is missing downloads it from its card (or right after it is
uploaded) — with no page error, console error or unexpected failed request on the way."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Locator, Page, Request, expect

from tests.e2e.service import Service, running_service
from tests.e2e.test_web_ui import PHONE, Watch, browser, open_page, screenshot  # noqa: F401 (browser: a fixture)
from tests.model_server import ServedFile, model_server_thread

pytestmark = pytest.mark.slow

CHUNK_BYTES = 16 * 1024
DOWNLOAD_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Served:
    """One catalog model: its bytes and how the local model server serves them."""

    data: bytes
    folder: str
    delay_s: float = 0.0
    corrupt: bool = False


MODELS = {
    "vix_fast": Served(os.urandom(96 * 1024), "checkpoints"),
    "vix_slow": Served(os.urandom(1024 * 1024), "loras", delay_s=0.15),   # 64 chunks: ~10 s
    "vix_broken": Served(os.urandom(48 * 1024), "vae", corrupt=True),     # wrong sha256: fails
    "vix_card": Served(os.urandom(256 * 1024), "upscale_models", delay_s=0.15),  # ~2.4 s
    "vix_offer": Served(os.urandom(32 * 1024), "upscale_models"),
}
GATED_HF = "vix_gated_hf"
CARD_FLOW = "e2e_needs_card_model"
OFFER_FLOW = "e2e_needs_offer_model"


def flow_graph(name: str, model_file: str) -> dict[str, object]:
    """A small runnable flow whose text input names a model file (so the catalog's regex finds it)."""
    return {
        "1": {"class_type": "VixUiWorkflowMetadata", "inputs": {
            "name": name, "display_name": name.replace("_", " "), "description": "needs a catalog model",
            "author": "tests", "homepage": "", "documentation": "", "license": "", "tags": "[]", "version": "1.0.0"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "ImageDrawText", "inputs": {"image": ["2", 0], "text": model_file, "font_size": 4,
                                                         "x": 0, "y": 0, "color": 16777215, "opacity": 1.0,
                                                         "anchor": "top-left"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": name}},
    }


def catalog_entries(base_url: str) -> dict[str, dict[str, object]]:
    entries: dict[str, dict[str, object]] = {
        name: {"regexes": [{"input_value": f"^{name}\\.safetensors$"}], "url": f"{base_url}/{name}.safetensors",
               "hash": hashlib.sha256(served.data).hexdigest(), "file_size": len(served.data),
               "types": [served.folder], "homepage": f"https://example.org/{name}"}
        for name, served in MODELS.items()}
    entries["vix_broken"]["gated"] = True
    entries[GATED_HF] = {"url": "https://huggingface.co/org/repo/resolve/main/gated.safetensors", "gated": True,
                         "hash": "0" * 64, "file_size": 1234, "types": ["checkpoints"]}
    return entries


@dataclass
class ModelsService:
    service: Service
    models_dir: Path

    def file(self, name: str) -> Path:
        return self.models_dir / MODELS[name].folder / f"{name}.safetensors"


@pytest.fixture(scope="module")
def models_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelsService]:
    """DEFAULT mode with a catalog of the local model server's files, one flow that needs ``vix_card``, and an
    empty models folder."""
    files = {f"/{name}.safetensors": ServedFile(served.data, delay_s=served.delay_s, corrupt=served.corrupt,
                                                chunk_bytes=CHUNK_BYTES) for name, served in MODELS.items()}
    workdir = tmp_path_factory.mktemp("web_models")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    (flows_dir / f"{CARD_FLOW}.json").write_text(json.dumps(flow_graph(CARD_FLOW, "vix_card.safetensors")))
    models_dir = workdir / "models"
    with model_server_thread(files) as server:
        catalog = workdir / "catalog.json"
        catalog.write_text(json.dumps(catalog_entries(server.base_url)))
        env = {"VIX_MODELS_CATALOG": str(catalog), "VIX_DOWNLOAD_ALLOW_HOSTS": "127.0.0.1",
               "VIX_MODELS_DIR": str(models_dir), "VIX_FLOWS_DIRS": str(flows_dir), "VIX_DEVICE": "cpu"}
        with running_service(workdir, env) as service:
            yield ModelsService(service, models_dir)


class ModelsWatch(Watch):
    """Also counts the ``GET /vapi/models`` list reads (polling would show up there)."""

    def __init__(self, origin: str) -> None:
        super().__init__(origin)
        self.model_list_requests: list[str] = []

    def on_request(self, request: Request) -> None:
        super().on_request(request)
        if request.method == "GET" and urlsplit(request.url).path == "/vapi/models":
            self.model_list_requests.append(request.url)


def row_of(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-model="{name}"]')


async def value_now(bar: Locator) -> int:
    return int(await bar.get_attribute("aria-valuenow") or -1)


async def test_models_are_installed_cancelled_and_removed_with_live_progress(models_service: ModelsService,
                                                                             browser: Browser) -> None:  # noqa: F811
    watch = ModelsWatch(models_service.service.url)
    page = await open_page(browser, watch, f"{models_service.service.url}/#/models")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Models")
    await expect(page.locator("tr[data-model]")).to_have_count(len(MODELS) + 1)
    for name in MODELS:
        await expect(row_of(page, name)).to_have_attribute("data-state", "missing")
    await expect(row_of(page, GATED_HF)).to_contain_text("Gated: needs HF_TOKEN")
    await expect(row_of(page, "vix_broken")).to_contain_text("Gated: needs an access token")
    await expect(row_of(page, "vix_card").get_by_role("link", name=CARD_FLOW)).to_be_visible()
    await expect(row_of(page, "vix_fast").get_by_role("link", name="vix_fast")).to_have_attribute(
        "href", "https://example.org/vix_fast")

    # The slow download: its bar moves on pushed events alone, then it is cancelled; its .part stays (partial).
    slow = row_of(page, "vix_slow")
    async with page.expect_response(lambda answer: urlsplit(answer.url).path == "/vapi/models"):
        await slow.get_by_role("button", name="Install vix_slow").click()  # the list is read once after the POST
    bar = slow.get_by_role("progressbar", name="Download of vix_slow")
    await expect(bar).to_be_visible()
    await expect(slow).to_have_attribute("data-state", "downloading", timeout=DOWNLOAD_TIMEOUT_MS)
    await expect(bar).not_to_have_attribute("aria-valuenow", "0")
    reads = len(watch.model_list_requests)
    first = await value_now(bar)
    await expect(bar).not_to_have_attribute("aria-valuenow", str(first))
    assert await value_now(bar) > first > 0
    await expect(slow.locator(".meter-text")).to_contain_text(" of 1.0 MB")
    await expect(slow.locator(".meter-text")).to_contain_text("/s")
    assert len(watch.model_list_requests) == reads, "the bar moved by reading the list again"
    await screenshot(page, "models")
    await slow.get_by_role("button", name="Cancel vix_slow").click()
    await expect(slow).to_have_attribute("data-state", "partial", timeout=DOWNLOAD_TIMEOUT_MS)
    await expect(slow).to_contain_text("Download cancelled")
    await expect(slow).to_contain_text("downloaded; Resume continues it")
    await expect(slow.get_by_role("button", name="Resume vix_slow")).to_be_visible()
    await expect(bar).to_be_hidden()
    assert not models_service.file("vix_slow").exists()

    # Remove the partial download, after the confirmation (Remove chosen from the keyboard).
    await slow.get_by_role("button", name="Remove vix_slow").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Remove the model “vix_slow”")
    await page.keyboard.press("Tab")
    await expect(dialog.get_by_role("button", name="Remove")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(slow).to_have_attribute("data-state", "missing")
    assert not list(models_service.file("vix_slow").parent.glob("vix_slow*"))

    # The fast one installs (Install pressed from the keyboard), its file is the catalog's; then it is removed.
    fast = row_of(page, "vix_fast")
    await fast.get_by_role("button", name="Install vix_fast").focus()
    await page.keyboard.press("Enter")
    await expect(fast).to_have_attribute("data-state", "installed", timeout=DOWNLOAD_TIMEOUT_MS)
    assert models_service.file("vix_fast").read_bytes() == MODELS["vix_fast"].data
    await expect(fast.get_by_role("button", name="Install vix_fast")).to_have_count(0)

    # Filters: the search box, the state, and only the models installed flows need.
    await page.get_by_label("Search").fill("fast")
    await expect(page.locator("tr[data-model]:visible")).to_have_count(1)
    await expect(fast).to_be_visible()
    await page.get_by_label("Search").fill("")
    await page.get_by_label("State").select_option("installed")
    await expect(page.locator("tr[data-model]:visible")).to_have_count(1)
    await expect(fast).to_be_visible()
    await page.get_by_label("State").select_option("")
    await page.get_by_label("Only models installed flows need").check()
    await expect(row_of(page, "vix_card")).to_be_visible()
    await expect(fast).to_be_hidden()
    await page.get_by_label("Only models installed flows need").uncheck()
    await expect(page.locator("tr[data-model]:visible")).to_have_count(len(MODELS) + 1)

    await fast.get_by_role("button", name="Remove vix_fast").click()
    await dialog.get_by_role("button", name="Remove").click()
    await expect(fast).to_have_attribute("data-state", "missing")
    assert not models_service.file("vix_fast").exists()
    await expect(page.get_by_role("status").filter(has_text="Removed the model “vix_fast”")).to_be_visible()

    # A download that fails verification says why in its row.
    broken = row_of(page, "vix_broken")
    await broken.get_by_role("button", name="Install vix_broken").click()
    await expect(broken.locator(".model-error")).to_contain_text("Download failed", timeout=DOWNLOAD_TIMEOUT_MS)
    await expect(broken.locator(".model-error")).to_contain_text("sha256")
    await expect(broken.get_by_role("button", name="Install vix_broken")).to_be_visible()

    # Dark theme and the phone layout (each row a card).
    await page.get_by_label("Theme").select_option("dark")
    await screenshot(page, "models_dark")
    await page.set_viewport_size(PHONE)
    await expect(row_of(page, "vix_fast")).to_have_css("display", "block")
    await screenshot(page, "models_phone")
    watch.check()


async def test_a_flow_downloads_its_missing_models_from_its_card_or_after_its_upload(
        models_service: ModelsService, browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    watch = ModelsWatch(models_service.service.url)
    page = await open_page(browser, watch, f"{models_service.service.url}/#/flows")
    card = page.locator(f'[data-flow="{CARD_FLOW}"]')
    await expect(card).to_contain_text("Missing: vix_card.safetensors")
    await card.get_by_role("button", name=f"Download the 1 missing model of {CARD_FLOW.replace('_', ' ')}").click()
    card_bar = card.get_by_role("progressbar", name=f"Download of the models of {CARD_FLOW.replace('_', ' ')}")
    await expect(card_bar).to_be_visible(timeout=DOWNLOAD_TIMEOUT_MS)
    await expect(card_bar).to_have_attribute("aria-valuenow", re.compile(r"^\d+$"))
    await expect(card.get_by_role("button", name=re.compile("missing model"))).to_have_text("Downloading…")
    await screenshot(page, "flows_models")
    await expect(card).to_contain_text("All present", timeout=DOWNLOAD_TIMEOUT_MS)
    await expect(card).not_to_contain_text("Missing")
    assert models_service.file("vix_card").read_bytes() == MODELS["vix_card"].data

    # Uploading a flow whose model is missing offers to download it at once.
    flow_file = tmp_path / f"{OFFER_FLOW}.json"
    flow_file.write_text(json.dumps(flow_graph(OFFER_FLOW, "vix_offer.safetensors")))
    await page.get_by_label("Flow file (.json: a Visionatrix flow or a ComfyUI workflow)").set_input_files(flow_file)
    offer = page.locator(".message").filter(has_text=f"Installed the flow “{OFFER_FLOW.replace('_', ' ')}”")
    await expect(offer).to_contain_text("It needs 1 model")
    await offer.get_by_role("button", name="Download 1 missing model").click()
    await expect(page.locator(f'[data-flow="{OFFER_FLOW}"]')).to_contain_text("All present",
                                                                              timeout=DOWNLOAD_TIMEOUT_MS)
    assert models_service.file("vix_offer").read_bytes() == MODELS["vix_offer"].data

    # The Models page filtered to a flow lists only its models.
    await page.goto(f"{models_service.service.url}/#/models/{CARD_FLOW}")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Models of {CARD_FLOW}")
    await expect(page.locator("tr[data-model]")).to_have_count(1)
    await expect(row_of(page, "vix_card")).to_have_attribute("data-state", "installed")
    await screenshot(page, "models_of_flow")
    watch.check()


async def test_a_worker_shows_its_models_and_is_asked_to_free_its_memory(models_service: ModelsService,
                                                                           browser: Browser) -> None:  # noqa: F811
    watch = ModelsWatch(models_service.service.url)
    page = await open_page(browser, watch, f"{models_service.service.url}/#/workers")
    row = page.locator("tr[data-worker-id]").first
    await expect(row).to_be_visible(timeout=DOWNLOAD_TIMEOUT_MS)
    worker_id = await row.get_attribute("data-worker-id")
    models = row.locator('td[data-label="Models"]')
    await expect(models).to_contain_text(re.compile(r"\d+ installed"))
    await models.get_by_role("button", name=f"Free the memory of {worker_id}").click()
    await expect(page.get_by_role("status").filter(has_text=f"Asked {worker_id} to free its memory")).to_be_visible()
    watch.check()
