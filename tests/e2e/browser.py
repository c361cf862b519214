"""What the browser tests share: Debian's chromium driven by Playwright (never a downloaded browser), a record of
what a page did wrong, and a check that a screenshot is not blank."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Response, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
FAILED_RESOURCE = re.compile(r"^Failed to load resource: ")
"""Chromium's console line for every answer >= 400; each such answer is judged on its own."""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Debian chromium (``.ci/browser-up`` installs it), closed afterwards."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run ./.ci/browser-up"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """What pages did with the service at ``origin``: answers >= 400 and failed requests, console errors, uncaught
    errors, and the text frames their WebSockets received. Subclasses say what a test tolerates."""

    origin: str
    failures: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("request", self.on_request)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("websocket", lambda socket: socket.on(
            "framereceived", lambda frame: self.frames.append(frame) if isinstance(frame, str) else None))
        return page

    def on_request(self, request: Request) -> None:
        """Every request the page makes (for subclasses that count some)."""

    def tolerates_answer(self, response: Response) -> bool:
        return False

    def tolerates_failure(self, request: Request) -> bool:
        return False

    def tolerates_console(self, text: str) -> bool:
        return bool(FAILED_RESOURCE.search(text))

    def _ours(self, url: str) -> bool:
        return url.startswith(self.origin + "/")

    def _on_response(self, response: Response) -> None:
        if self._ours(response.url) and response.status >= 400 and not self.tolerates_answer(response):
            self.failures.append(f"{response.status} {response.request.method} {response.url}")

    def _on_request_failed(self, request: Request) -> None:
        if self._ours(request.url) and not self.tolerates_failure(request):
            self.failures.append(f"{request.method} {request.url}: {request.failure}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not self.tolerates_console(message.text):
            self.console_errors.append(message.text)

    def report(self) -> str:
        return (f"failed requests: {self.failures}\nconsole errors: {self.console_errors}\n"
                f"page errors: {self.page_errors}")


def distinct_colours(path: Path) -> int:
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20
