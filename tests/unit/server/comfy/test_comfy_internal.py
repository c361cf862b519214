"""ComfyUI's ``/internal`` routes: the terminal panel's log lines (and ``logs`` messages to subscribed sockets),
the folders, the files of a folder."""

from __future__ import annotations

import logging
import os
import shutil

from aiohttp.test_utils import TestClient

from tests.unit.server.helpers import SAMPLE
from visionatrix.server.services import Services


async def test_recent_log_lines_are_listed_and_streamed_to_subscribers(http: TestClient) -> None:
    logging.getLogger("visionatrix.test").warning("a line for the terminal panel")
    raw = await (await http.get("/internal/logs/raw")).json()
    assert raw["size"]["cols"] > 0
    assert any("a line for the terminal panel" in entry["m"] for entry in raw["entries"])
    assert "a line for the terminal panel" in await (await http.get("/comfy/internal/logs")).json()
    async with http.ws_connect("/ws?clientId=term") as ws:
        await ws.receive_json(timeout=5)
        response = await http.patch("/internal/logs/subscribe", json={"clientId": "term", "enabled": True})
        assert response.status == 200
        logging.getLogger("visionatrix.test").warning("streamed line")
        while True:
            message = await ws.receive_json(timeout=5)
            if message["type"] == "logs":
                break
        assert message["data"]["entries"][0]["m"].endswith("streamed line\n")
        await http.patch("/internal/logs/subscribe", json={"clientId": "term", "enabled": False})
    for bad in ({"clientId": 1, "enabled": True}, {"clientId": "x"}, [1]):
        assert (await http.patch("/internal/logs/subscribe", json=bad)).status == 400
    assert (await http.get("/api/internal/logs")).status == 404  # no /api alias, as in ComfyUI


async def test_folder_paths_and_files_newest_first(http: TestClient, services: Services) -> None:
    assert services.models_dir is not None
    (services.models_dir / "checkpoints").mkdir(parents=True)
    extra = services.models_dir.parent / "a1111-loras"
    assert services.model_folders is not None
    services.model_folders.add_path("loras", extra)
    paths = await (await http.get("/internal/folder_paths")).json()
    assert "checkpoints" in paths and set(paths) >= {"input", "output", "temp"}
    assert str(extra.absolute()) in paths["loras"], "an extra model path is a root of its folder"
    assert paths["diffusion_models"][0] == str((services.models_dir / "diffusion_models").absolute())
    folder = services.storage.root / "comfy" / "input"
    folder.mkdir(parents=True)
    shutil.copyfile(SAMPLE, folder / "old.jpg")
    shutil.copyfile(SAMPLE, folder / "new.jpg")
    os.utime(folder / "old.jpg", (1_000_000, 1_000_000))
    assert await (await http.get("/internal/files/input")).json() == ["new.jpg", "old.jpg"]
    assert await (await http.get("/internal/files/temp")).json() == []
    assert (await http.get("/internal/files/secrets")).status == 400
