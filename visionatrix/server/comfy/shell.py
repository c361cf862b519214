"""The graph editor's shell routes (``docs/comfy-api.md``, "Editor shell and user data"): feature flags, the lists
it loads at boot (extensions, embeddings, translations, templates, subgraph blueprints, node replacements), the
model folders and ``system_stats``.

Our JS extensions (``extensions/*.js``; ``open_flow.js``: ``comfy/?vix_flow=<name>`` opens an installed flow) are
listed in ``/extensions`` and served at ``/extensions/visionatrix/<file>``; we ship no translations, custom-node
templates or blueprints, so those answer empty (the Templates dialog reads ``templates/index.json``:
``templates.py``). The model routes answer from the
:class:`~visionatrix.models.folders.ModelFolders` of the services: the folders are ComfyUI's standard ones plus the
other subfolders of ``VIX_MODELS_DIR`` and the folders of ``VIX_EXTRA_MODEL_PATHS``; a folder's models are the files
with a model extension at any depth in any of its roots (``pathIndex`` says which root).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.hostinfo import host_memory
from visionatrix.models.folders import ModelFolders
from visionatrix.models.safetensors_header import read_metadata
from visionatrix.server.errors import BadRequest
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES, Services
from visionatrix.server.static_files import confined_file

FRONTEND_PACKAGE = "comfyui-frontend-package"
EXTENSIONS_DIR = Path(__file__).parent / "extensions"
EXTENSIONS_URL = "extensions/visionatrix"
NOT_MODEL_FOLDERS = frozenset({"configs", "custom_nodes"})
"""Folders ComfyUI keeps beside its model folders that the editor's model library does not show."""


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/features", get_features)
    router.add_get(f"{prefix}/extensions", list_extensions)
    router.add_get(f"{prefix}/{EXTENSIONS_URL}/{{name}}", get_extension)
    router.add_get(f"{prefix}/embeddings", get_embeddings)
    router.add_get(f"{prefix}/i18n", _empty_dict)
    router.add_get(f"{prefix}/workflow_templates", _empty_dict)
    router.add_get(f"{prefix}/global_subgraphs", _empty_dict)
    router.add_get(f"{prefix}/global_subgraphs/{{id}}", get_global_subgraph)
    router.add_get(f"{prefix}/node_replacements", _empty_dict)
    router.add_get(f"{prefix}/models", list_model_folders)
    router.add_get(f"{prefix}/models/{{folder}}", list_models)
    router.add_get(f"{prefix}/experiment/models", list_model_library)
    router.add_get(f"{prefix}/experiment/models/{{folder}}", list_model_library_folder)
    router.add_get(f"{prefix}/view_metadata/{{folder}}", get_model_metadata)
    router.add_get(f"{prefix}/system_stats", get_system_stats)


def feature_flags(services: Services) -> dict[str, Any]:
    """The server's feature flags: ``GET /features`` and the WebSocket ``feature_flags`` reply."""
    return {
        "supports_preview_metadata": True,
        "supports_model_type_tags": False,
        "max_upload_size": services.storage.max_upload_bytes,
        "extension": {"manager": {"supports_v4": False}},
        "node_replacements": True,
        "assets": False,
    }


async def get_features(request: web.Request) -> web.Response:
    return web.json_response(feature_flags(request.app[SERVICES]))


async def list_extensions(request: web.Request) -> web.Response:
    """The editor imports each of these (a path it resolves against its own base, ``/comfy``)."""
    names = sorted(path.name for path in EXTENSIONS_DIR.glob("*.js"))
    return web.json_response([f"/{EXTENSIONS_URL}/{name}" for name in names])


async def get_extension(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = confined_file(EXTENSIONS_DIR.resolve(), name)
    if path is None or not path.is_file() or path.suffix != ".js":
        raise NotFound("editor extension", name)
    return web.FileResponse(path, headers={"Content-Type": "text/javascript", "Cache-Control": "no-cache"})


async def _empty_dict(request: web.Request) -> web.Response:
    return web.json_response({})


async def get_global_subgraph(request: web.Request) -> web.Response:
    raise NotFound("subgraph blueprint", request.match_info["id"])


# --- model folders ---------------------------------------------------------------------------------------------


def _folders(request: web.Request) -> ModelFolders | None:
    return request.app[SERVICES].model_folders


def _model_folder(folders: ModelFolders | None, folder: str) -> str:
    """The canonical name of ``folder``; ``NotFound`` unless it is one of the model folders."""
    if folders is not None and folders.canonical(folder) in folders.folder_names():
        return folders.canonical(folder)
    raise NotFound("model folder", folder)


async def get_embeddings(request: web.Request) -> web.Response:
    folders = _folders(request)
    if folders is None:
        return web.json_response([])
    files = await asyncio.to_thread(folders.list_files, "embeddings")
    return web.json_response([name.rsplit(".", 1)[0] for name in files])


async def list_model_folders(request: web.Request) -> web.Response:
    folders = _folders(request)
    return web.json_response(await asyncio.to_thread(folders.folder_names) if folders is not None else [])


async def list_models(request: web.Request) -> web.Response:
    folders = _folders(request)
    folder = _model_folder(folders, request.match_info["folder"])
    assert folders is not None
    return web.json_response(await asyncio.to_thread(folders.list_files, folder))


async def get_model_metadata(request: web.Request) -> web.Response:
    """ComfyUI's ``view_metadata``: the ``__metadata__`` of a ``.safetensors`` file of a model folder (404 when the
    folder, the file or its metadata is absent; 400 ``invalid_model`` when the file is not safetensors inside)."""
    folders = _folders(request)
    folder = _model_folder(folders, request.match_info["folder"])
    assert folders is not None
    filename = request.query.get("filename", "")
    if not filename:
        raise BadRequest("missing_filename", "the filename query parameter is required")
    if not filename.endswith(".safetensors"):
        raise NotFound("safetensors file", filename)
    path = await asyncio.to_thread(folders.find, folder, filename)
    if path is None:
        raise NotFound(f"model file in {folder}", filename)
    metadata = await asyncio.to_thread(read_metadata, path, name=f"{folder}/{filename}")
    if metadata is None:
        raise NotFound(f"metadata of {folder}", filename)
    return web.json_response(metadata)


async def list_model_library(request: web.Request) -> web.Response:
    folders = _folders(request)
    if folders is None:
        return web.json_response([])
    names = await asyncio.to_thread(folders.folder_names)
    shown = _absolute if identity(request).is_admin else _placeholder
    return web.json_response([{"name": name, "folders": [shown(root, name, index)
                                                         for index, root in enumerate(folders.roots(name))]}
                              for name in names if name not in NOT_MODEL_FOLDERS])


def _absolute(root: Path, _name: str, _index: int) -> str:
    return str(root.absolute())


def _placeholder(_root: Path, name: str, index: int) -> str:
    """What a user who is not an admin sees instead of a root's absolute path (the index still tells them apart)."""
    return f"models/{name}" if index == 0 else f"models ({index + 1})/{name}"


async def list_model_library_folder(request: web.Request) -> web.Response:
    name = request.match_info["folder"]
    if name in NOT_MODEL_FOLDERS:
        raise NotFound("model folder", name)
    folders = _folders(request)
    folder = _model_folder(folders, name)
    assert folders is not None
    return web.json_response(await asyncio.to_thread(_library_entries, folders, folder))


def _library_entries(folders: ModelFolders, folder: str) -> list[dict[str, Any]]:
    """Each file with the index of its root (``pathIndex``), size and times."""
    entries = []
    for entry in folders.entries(folder):
        try:
            stat = entry.path.stat()
        except OSError:
            continue
        entries.append({"name": entry.name, "pathIndex": entry.root_index, "modified": stat.st_mtime,
                        "created": stat.st_ctime, "size": stat.st_size})
    return entries


# --- system_stats ----------------------------------------------------------------------------------------------


async def get_system_stats(request: web.Request) -> web.Response:
    """ComfyUI's ``system_stats``; torch is imported here, in a thread, never when the server starts."""
    stats = await asyncio.to_thread(system_stats, request.app[SERVICES].version)
    return web.json_response(stats)


def system_stats(version: str) -> dict[str, Any]:
    ram_total, ram_free = host_memory()
    torch_version, devices = _torch_devices()
    system = {
        "os": sys.platform,
        "ram_total": ram_total,
        "ram_free": ram_free,
        "comfyui_version": version,
        "required_frontend_version": _installed_version(FRONTEND_PACKAGE),
        "python_version": sys.version,
        "pytorch_version": torch_version,
        "embedded_python": False,
        "argv": public_argv(sys.argv),
    }
    return {"system": system, "devices": devices}


def public_argv(argv: list[str]) -> list[str]:
    """The command line as ``system_stats`` shows it: the program's name alone. The arguments may carry secrets
    (``--worker-auth``, a password in ``--database-uri``) and absolute paths; the editor only needs a list."""
    return [Path(argv[0]).name] if argv else []


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


CPU_DEVICE = {"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0,
              "torch_vram_total": 0, "torch_vram_free": 0}


def _torch_devices() -> tuple[str, list[dict[str, Any]]]:
    """``(torch version, devices)``: every CUDA device, or the CPU alone; ``("", [cpu])`` without torch."""
    try:
        import torch
    except ImportError:
        return "", [dict(CPU_DEVICE)]
    if not torch.cuda.is_available():
        return str(torch.__version__), [dict(CPU_DEVICE)]
    devices = []
    for index in range(torch.cuda.device_count()):
        free_bytes, total_bytes = torch.cuda.mem_get_info(index)
        reserved_bytes = torch.cuda.memory_reserved(index)
        allocated_bytes = torch.cuda.memory_allocated(index)
        devices.append({"name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda",
                        "index": index, "vram_total": total_bytes, "vram_free": free_bytes,
                        "torch_vram_total": reserved_bytes, "torch_vram_free": reserved_bytes - allocated_bytes})
    return str(torch.__version__), devices
