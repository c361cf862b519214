"""ComfyUI's node catalogue (comfyui_api.md §1.2, §4): ``object_info`` and ``object_info/{node_class}``.

Built on every request, never cached, so a file uploaded a moment ago is already among the choices. The nodes'
``INPUT_TYPES`` run under a :class:`~visionatrix.nodes.context.NodeContext` whose folders are the ComfyUI folders
of our storage (``folder_paths.get_input_directory()`` and the like answer them) and whose model folders are the
server's (``folder_paths.get_filename_list("upscale_models")`` lists the real files), and every COMBO input flagged
``image_upload`` (LoadImage, LoadImageMask, ...) gets the current list of input images, subfolders included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from visionatrix.nodes.context import NodeContext, use
from visionatrix.server import jsonio
from visionatrix.server.comfy.paths import ComfyFolders, folders_for
from visionatrix.server.services import SERVICES, Services

log = logging.getLogger(__name__)

NodeInfo = dict[str, Any]


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/object_info", get_object_info)
    router.add_get(f"{prefix}/object_info/{{node_class:.+}}", get_node_info)


async def get_object_info(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    info = await asyncio.to_thread(catalogue, services, lambda: services.registry.object_info(), folders_for(request))
    return web.json_response(info, dumps=jsonio.dumps)


async def get_node_info(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    name = request.match_info["node_class"]
    info = await asyncio.to_thread(catalogue, services, lambda: _one(services, name), folders_for(request))
    return web.json_response(info, dumps=jsonio.dumps)


def catalogue(services: Services, describe: Callable[[], dict[str, NodeInfo]],
              folders: ComfyFolders | None = None) -> dict[str, NodeInfo]:
    """What ``describe`` returns when run with the caller's ComfyUI ``folders`` (default: sign-in off's) as the node
    context, with the input-image choices filled in (blocking: directory listings and every node's
    ``INPUT_TYPES``)."""
    folders = folders or ComfyFolders(services.storage.root)
    context = NodeContext(input_dir=folders.input_dir, output_dir=folders.output_dir, temp_dir=folders.temp_dir,
                          max_image_pixels=services.max_image_pixels, models_dir=services.models_dir,
                          model_folders=services.model_folders)
    with use(context):
        info = describe()
    images = folders.input_images()
    for node in info.values():
        fill_image_choices(node, images)
    return info


def _one(services: Services, name: str) -> dict[str, NodeInfo]:
    """``{name: info}``, or ``{}`` when the class is unknown or its description raises (logged)."""
    if name not in services.registry:
        return {}
    try:
        return {name: services.registry.describe(name)}
    except Exception:
        log.exception("node %s: INPUT_TYPES failed; not described", name)
        return {}


def fill_image_choices(node: NodeInfo, images: list[str]) -> None:
    """Replace the choices of each COMBO input of ``node`` flagged ``image_upload`` (and not pointed at another
    folder by ``image_folder``) with ``images``; the description is changed in place."""
    sections = node.get("input") or {}
    for section in ("required", "optional"):
        for spec in (sections.get(section) or {}).values():
            if not isinstance(spec, list) or len(spec) < 2 or not isinstance(spec[1], dict):
                continue
            options = spec[1]
            if not options.get("image_upload") or options.get("image_folder", "input") != "input":
                continue
            if isinstance(spec[0], list):
                spec[0] = list(images)
            elif spec[0] == "COMBO":
                options["options"] = list(images)
