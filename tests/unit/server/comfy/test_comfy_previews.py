"""``/view?preview=...`` renders a big image once: later calls are served from the app's preview cache, previews
are at most 2048 px a side, and a changed file is rendered anew."""

from __future__ import annotations

import asyncio
import io

from aiohttp.test_utils import TestClient
from PIL import Image

from visionatrix.server.comfy.files import PREVIEW_MAX_SIDE_PX
from visionatrix.server.comfy.previews import PREVIEWS, PreviewCache
from visionatrix.server.services import Services


def picture(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


async def view(http: TestClient, **params: str) -> bytes:
    response = await http.get("/view", params={"filename": "big.png", "subfolder": "3", **params})
    assert response.status == 200, await response.text()
    return await response.read()


async def test_a_second_preview_is_served_from_the_cache_with_the_same_bytes(http: TestClient,
                                                                            services: Services) -> None:
    path = services.storage.output_dir(3) / "big.png"
    path.write_bytes(picture((2100, 400), (10, 200, 30)))
    cache = http.server.app[PREVIEWS]

    first = await view(http, preview="webp;50")
    assert cache.renders == 1
    second = await view(http, preview="webp;50")
    assert second == first and cache.renders == 1 and cache.hits == 1
    with Image.open(io.BytesIO(first)) as shown:
        assert shown.format == "WEBP" and shown.size == (PREVIEW_MAX_SIDE_PX, 390)

    await view(http, preview="webp;90")  # another rendering of the same file
    assert cache.renders == 2
    with Image.open(io.BytesIO(await view(http, channel="rgb"))) as full:  # no preview: the full size
        assert full.size == (2100, 400)

    path.write_bytes(picture((300, 100), (250, 0, 0)))  # the file changed: rendered anew
    renders = cache.renders
    changed = await view(http, preview="webp;50")
    assert changed != first and cache.renders == renders + 1


async def test_identical_requests_at_once_render_once(http: TestClient, services: Services) -> None:
    (services.storage.output_dir(3) / "big.png").write_bytes(picture((1000, 1000), (1, 2, 3)))
    cache = http.server.app[PREVIEWS]
    bodies = await asyncio.gather(*(view(http, preview="jpeg;80", channel="rgb") for _ in range(4)))
    assert len(set(bodies)) == 1 and cache.renders == 1


def test_the_cache_keeps_at_most_its_bytes_and_skips_bodies_over_a_quarter_of_them(tmp_path) -> None:
    cache = PreviewCache(max_bytes=1000)
    for index in range(10):
        cache.get_or_render(("k", index), lambda: (b"x" * 200, "image/webp"))
    assert cache.nbytes == 1000 and len(cache) == 5 and cache.renders == 10
    cache.get_or_render("big", lambda: (b"x" * 251, "image/webp"))
    assert "big" not in cache._entries and cache.nbytes == 1000
