"""The graph editor's user data (``docs/comfy-api.md``, "Editor shell and user data"): its settings and the files
it saves (workflows, ``user.css``, templates), all inside ``<user_dir>/default`` — one user, ComfyUI's "default" —
or, with sign-in on, inside ``<user_dir>/users/<name>`` of the signed-in user: each user has their own.

A user path arrives as one URL segment with ``%2F`` for its slashes (aiohttp matches the encoded path and hands us
the segment unquoted). Every path is confined to the user folder: empty paths, NUL and backslashes are refused with
400, absolute paths, ``..`` and symlinks that lead outside with 403. Writes go to a temporary file beside the target
and are renamed over it, so a failed or refused write leaves nothing behind and an older file intact.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from visionatrix.errors import Conflict, NotFound, TooLarge
from visionatrix.server import parsing
from visionatrix.server.errors import BadRequest
from visionatrix.server.identity import identity
from visionatrix.server.middlewares import error_response
from visionatrix.server.services import SERVICES
from visionatrix.storage import streams

USER = "default"
SETTINGS_FILE = "comfy.settings.json"
USER_CSS = "user.css"
CHUNK_BYTES = 64 * 1024

UserHandler = Callable[[web.Request, Path], Awaitable[web.StreamResponse]]


def _with_user_root(handler: UserHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Hands ``handler`` the caller's user folder (``<user_dir>/default``, or ``<user_dir>/users/<name>`` of a
    signed-in user); 404 when no user folder is configured."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        user_dir = request.app[SERVICES].user_dir
        if user_dir is None:
            return error_response(404, "not_found", "the editor's user data is off: no user folder (VIX_USER_DIR)")
        caller = identity(request)
        root = user_dir / USER if caller.user_id is None else user_dir / "users" / caller.name
        return await handler(request, root)

    return wrapped


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/users", get_users)
    router.add_get(f"{prefix}/settings", get_settings)
    router.add_post(f"{prefix}/settings", post_settings)
    router.add_get(f"{prefix}/settings/{{id}}", get_setting)
    router.add_post(f"{prefix}/settings/{{id}}", post_setting)
    router.add_get(f"{prefix}/userdata", list_userdata)
    router.add_get(f"{prefix}/v2/userdata", list_userdata_v2)
    router.add_get(f"{prefix}/userdata/{{file}}", get_userdata)
    router.add_post(f"{prefix}/userdata/{{file}}", post_userdata)
    router.add_delete(f"{prefix}/userdata/{{file}}", delete_userdata)
    router.add_post(f"{prefix}/userdata/{{file}}/move/{{dest}}", move_userdata)


# --- paths and flags -------------------------------------------------------------------------------------------


def user_path(root: Path, relative: str, *, allow_root: bool = False) -> Path:
    """``root / relative``, refusing anything that could name a file outside ``root``."""
    if "\x00" in relative or "\\" in relative:
        raise BadRequest("bad_path", f"user path {relative!r} holds a NUL or a backslash")
    if relative.startswith("/"):
        raise web.HTTPForbidden(text=f"user path {relative!r} is absolute; give it relative to the user folder")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise web.HTTPForbidden(text=f"user path {relative!r} climbs out with '..'")
    if not parts and not allow_root:
        raise BadRequest("bad_path", "the user path is empty")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise web.HTTPForbidden(text=f"user path {relative!r} leads outside the user folder")
    return path


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise BadRequest("bad_query", f"query parameter {name!r} must be true or false, not {value!r}")


def _file_info(path: Path, relative: str) -> dict[str, Any]:
    stat = path.stat()
    return {"path": relative, "size": stat.st_size, "modified": int(stat.st_mtime * 1000),
            "created": int(stat.st_ctime * 1000)}


def _saved(path: Path, root: Path, full_info: bool) -> web.Response:
    relative = path.relative_to(root).as_posix()
    return web.json_response(_file_info(path, relative) if full_info else relative)


async def _json_body(request: web.Request) -> Any:
    """The settings body (the editor sends it as ``text/plain``), under :mod:`visionatrix.server.jsonio`'s rules."""
    return await parsing.read_json(request, plain_ok=True, scripts_ok=True)


def _make_parents(path: Path) -> list[Path]:
    """Creates ``path``'s missing folders; returns them, nearest first, for ``_remove_empty``."""
    missing = [parent for parent in path.parents if not parent.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        _remove_empty(missing)
        raise Conflict(f"a file stands where a folder of {path.name!r} should be") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


# --- users and settings ----------------------------------------------------------------------------------------


@_with_user_root
async def get_users(request: web.Request, root: Path) -> web.Response:
    return web.json_response({"storage": "server", "migrated": True})


def read_settings(root: Path) -> dict[str, Any]:
    """The stored settings; ``{}`` when the file is missing, unreadable or not a JSON object."""
    try:
        data = json.loads((root / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_settings(root: Path, settings: dict[str, Any]) -> None:
    """Replaces the settings file at once (temporary file, fsync, rename)."""
    root.mkdir(parents=True, exist_ok=True)
    streams.write_json_atomically(root / SETTINGS_FILE, settings, indent=4, fsync=True)


@_with_user_root
async def get_settings(request: web.Request, root: Path) -> web.Response:
    return web.json_response(read_settings(root))


@_with_user_root
async def get_setting(request: web.Request, root: Path) -> web.Response:
    return web.json_response(read_settings(root).get(request.match_info["id"]))


@_with_user_root
async def post_settings(request: web.Request, root: Path) -> web.Response:
    changes = await _json_body(request)
    if not isinstance(changes, dict):
        raise BadRequest("invalid_settings", "settings must be a JSON object of setting id to value")
    # Read, merge and write with no await between them, so concurrent posts cannot lose each other's changes.
    write_settings(root, {**read_settings(root), **changes})
    return web.Response()


@_with_user_root
async def post_setting(request: web.Request, root: Path) -> web.Response:
    value = await _json_body(request)
    write_settings(root, {**read_settings(root), request.match_info["id"]: value})
    return web.Response()


# --- listing ---------------------------------------------------------------------------------------------------


def _files_in(folder: Path, recurse: bool) -> list[str]:
    if not recurse:
        return sorted(entry.name for entry in folder.iterdir() if entry.is_file())
    found = []
    for current, _dirs, files in os.walk(folder):
        base = Path(current).relative_to(folder)
        found += [(base / name).as_posix() for name in files if (Path(current) / name).is_file()]
    return sorted(found)


@_with_user_root
async def list_userdata(request: web.Request, root: Path) -> web.Response:
    """ComfyUI's ``GET /userdata?dir=``: file paths relative to ``dir``; ``full_info`` wins over ``split``."""
    relative = request.query.get("dir", "")
    if not relative:
        raise BadRequest("bad_query", "query parameter 'dir' is required")
    folder = user_path(root, relative)
    recurse, full_info, split = (_flag(request, name, False) for name in ("recurse", "full_info", "split"))
    if not folder.is_dir():
        raise NotFound("user folder", relative)
    files = await asyncio.to_thread(_files_in, folder, recurse)
    if full_info:
        return web.json_response([_file_info(folder / name, name) for name in files])
    if split:
        return web.json_response([[name, *name.split("/")] for name in files])
    return web.json_response(files)


@_with_user_root
async def list_userdata_v2(request: web.Request, root: Path) -> web.Response:
    """One folder's entries, folders first: ``[{"name", "path", "type", "size"?, "modified"}]``."""
    relative = request.query.get("path", "")
    folder = user_path(root, relative, allow_root=True)
    if not folder.is_dir():
        if folder == root:
            return web.json_response([])
        raise NotFound("user folder", relative)
    entries = []
    for entry in folder.iterdir():
        stat = entry.stat()
        item: dict[str, Any] = {"name": entry.name, "path": entry.relative_to(root).as_posix(),
                                "type": "directory" if entry.is_dir() else "file"}
        if item["type"] == "file":
            item["size"] = stat.st_size
        item["modified"] = int(stat.st_mtime * 1000)
        entries.append(item)
    entries.sort(key=lambda item: (item["type"] != "directory", item["name"]))
    return web.json_response(entries)


def _existing_file(request: web.Request, root: Path) -> Path:
    """The user file the route's ``{file}`` names; ``NotFound`` when there is none."""
    relative = request.match_info["file"]
    path = user_path(root, relative)
    if not path.is_file():
        raise NotFound("user file", relative)
    return path


# --- one file --------------------------------------------------------------------------------------------------


def no_user_css() -> web.Response:
    """The answer for an absent ``user.css``: 404, as an empty stylesheet, so the editor's ``<link rel=stylesheet>``
    finds none instead of a JSON body the browser refuses under ``X-Content-Type-Options: nosniff``."""
    return web.Response(status=404, text="/* no user.css */\n", content_type="text/css")


@_with_user_root
async def get_userdata(request: web.Request, root: Path) -> web.StreamResponse:
    if request.match_info["file"] == USER_CSS and not (root / USER_CSS).is_file():
        return no_user_css()
    path = _existing_file(request, root)
    headers = {"X-Content-Type-Options": "nosniff"}
    if path == root / USER_CSS:
        headers |= {"Content-Type": "text/css", "Content-Disposition": "inline"}
    else:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(path.name)}"
    return web.FileResponse(path, headers=headers)


@_with_user_root
async def post_userdata(request: web.Request, root: Path) -> web.Response:
    """Saves the raw body; 409 when the file exists and ``overwrite=false`` (checked before the write)."""
    relative = request.match_info["file"]
    path = user_path(root, relative)
    overwrite, full_info = _flag(request, "overwrite", True), _flag(request, "full_info", False)
    if path.is_dir():
        raise Conflict(f"user path {relative!r} is a folder")
    if path.exists() and not overwrite:
        raise Conflict(f"user file {relative!r} exists and overwrite is false")
    limit_bytes = request.app[SERVICES].storage.max_upload_bytes
    if request.content_length is not None and request.content_length > limit_bytes:
        raise TooLarge(f"user file {relative!r}", limit_bytes)
    created = _make_parents(path)
    try:
        await streams.write_stream(path, request.content.iter_chunked(CHUNK_BYTES), max_bytes=limit_bytes)
    except BaseException:
        _remove_empty(created)
        raise
    return _saved(path, root, full_info)


@_with_user_root
async def delete_userdata(request: web.Request, root: Path) -> web.Response:
    _existing_file(request, root).unlink()
    return web.Response(status=204)


@_with_user_root
async def move_userdata(request: web.Request, root: Path) -> web.Response:
    """Renames a user file; 409 when the destination exists and ``overwrite=false``."""
    relative, dest_relative = request.match_info["file"], request.match_info["dest"]
    source, dest = user_path(root, relative), user_path(root, dest_relative)
    overwrite, full_info = _flag(request, "overwrite", True), _flag(request, "full_info", False)
    if not source.is_file():
        raise NotFound("user file", relative)
    if dest != source:
        if dest.is_dir():
            raise Conflict(f"user path {dest_relative!r} is a folder")
        if dest.exists() and not overwrite:
            raise Conflict(f"user file {dest_relative!r} exists and overwrite is false")
        created = _make_parents(dest)
        try:
            os.replace(source, dest)
        except BaseException:
            _remove_empty(created)
            raise
    return _saved(dest, root, full_info)
