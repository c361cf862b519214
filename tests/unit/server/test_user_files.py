"""With sign-in on, the graph editor's uploads are each user's own: listed (LoadImage's choices), shown (/view)
and loadable in a prompt only for whoever uploaded them; model roots' absolute paths only for admins."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.unit.server.comfy.test_comfy_prompts import load_prompt
from tests.unit.server.helpers import SAMPLE
from tests.unit.server.signin_world import World, bearer, cookie, make_world
from visionatrix.server.services import Services


@pytest.fixture
async def world(services: Services, aiohttp_client: Any) -> World:
    """Services first, so the app closes before their engine is disposed."""
    return await make_world(aiohttp_client, services)


def _as(world: World, who: str) -> dict[str, str]:
    return cookie(world.secrets["root_session"]) if who == "root" else bearer(world.secrets[f"{who}_api"])


async def _upload(world: World, who: str, name: str) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", SAMPLE.read_bytes(), filename=name, content_type="image/jpeg")
    response = await world.client.post("/upload/image", data=form, headers=_as(world, who))
    assert response.status == 200, await response.text()
    return await response.json()


async def _choices(world: World, who: str) -> list[str]:
    response = await world.client.get("/object_info/LoadImage", headers=_as(world, who))
    assert response.status == 200
    return (await response.json())["LoadImage"]["input"]["required"]["image"][0]


async def test_an_upload_is_listed_shown_and_loadable_only_for_its_uploader(world: World) -> None:
    assert (await _upload(world, "alice", "alice.jpg"))["name"] == "alice.jpg"
    await _upload(world, "bob", "bob.jpg")
    assert await _choices(world, "alice") == ["alice.jpg"]
    assert await _choices(world, "bob") == ["bob.jpg"]
    assert await _choices(world, "root") == []
    view = "/view?filename=alice.jpg&type=input"
    assert (await world.client.get(view, headers=_as(world, "alice"))).status == 200
    assert (await world.client.get(view, headers=_as(world, "bob"))).status == 404
    refused = await world.client.post("/prompt", json={"prompt": load_prompt("alice.jpg")}, headers=_as(world, "bob"))
    assert refused.status == 400
    assert "alice.jpg" in await refused.text()
    taken = await world.client.post("/prompt", json={"prompt": load_prompt("alice.jpg")},
                                    headers=_as(world, "alice"))
    assert taken.status == 200, await taken.text()
    folder = world.services.storage.root / "comfy" / "users"
    assert (folder / "alice" / "input" / "alice.jpg").is_file() and (folder / "bob" / "input" / "bob.jpg").is_file()


async def test_model_roots_show_absolute_paths_to_admins_only(world: World) -> None:
    (world.services.models_dir / "loras").mkdir(parents=True)  # type: ignore[operator]
    answers = {}
    for who in ("alice", "root"):
        response = await world.client.get("/api/experiment/models", headers=_as(world, who))
        assert response.status == 200
        answers[who] = {entry["name"]: entry["folders"] for entry in await response.json()}
    assert answers["alice"]["loras"] == ["models/loras"]
    assert answers["root"]["loras"] == [str((world.services.models_dir / "loras").absolute())]  # type: ignore[operator]
    assert str(world.services.storage.root) not in str(answers["alice"])
