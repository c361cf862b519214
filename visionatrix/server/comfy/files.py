"""ComfyUI's file routes (comfyui_api.md §1.2, §1.5): ``view``, ``upload/image`` and ``upload/mask``.

``view`` serves a file of the input, output or temp folder (:mod:`visionatrix.server.comfy.paths`), raw or
re-encoded with Pillow (``preview=webp;90`` / ``jpeg;80``, ``channel=rgb`` / ``a``). A preview is at most
``PREVIEW_MAX_SIDE_PX`` on its long side (a bigger image is scaled down; ``channel`` alone keeps the full size).
Re-encoded bodies are rendered in a thread and kept in the app's preview cache (:mod:`.previews`, keyed by the
file's path, size and modification time and by the rendering). A bad file name is a 400, a subfolder leading out
of its folder a 403, a missing file a 404.

An upload streams the image part into a staging folder (refused past ``TaskStorage.max_upload_bytes`` with 413),
checks it is an image within ``max_image_pixels`` (else 400), then links it into place under its final name:
when the name is taken and ``overwrite`` is not set, identical content reuses the name and different content gets
``name (1).ext``, ``name (2).ext``... A refused upload leaves nothing behind. Uploads go to ``input`` (default) or
``temp``; ``output`` holds task results and takes no uploads.
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from PIL import Image

from visionatrix.errors import Conflict, NotFound
from visionatrix.server import jsonio, multipart
from visionatrix.server.comfy import paths, previews
from visionatrix.server.comfy.paths import ComfyFolders, PathEscape
from visionatrix.server.errors import BadRequest, UnsupportedMediaType
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES, Services
from visionatrix.server.task_owners import check_task_owner
from visionatrix.server.task_request import Staging
from visionatrix.storage.info import file_info

CHANNELS = ("rgba", "rgb", "a")
PREVIEW_FORMATS = ("webp", "jpeg")
DEFAULT_PREVIEW_QUALITY = 90
PREVIEW_MAX_SIDE_PX = 2048
UPLOAD_TYPES = ("input", "temp")
MAX_FIELD_BYTES = 64 * 1024
MAX_RENAMES = 10_000
_SCRIPTABLE = ("html", "svg", "javascript", "ecmascript", "xml")


def setup(app: web.Application) -> None:
    """The app state of the ``view`` routes: their preview cache."""
    previews.setup(app)


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/view", view)
    router.add_post(f"{prefix}/upload/image", upload_image)
    router.add_post(f"{prefix}/upload/mask", upload_mask)


def folders_of(request: web.Request) -> ComfyFolders:
    """The caller's folders (``paths.folders_for``)."""
    return paths.folders_for(request)


# -- view --------------------------------------------------------------------------------------------------------


async def view(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    query = request.rel_url.query
    filename, annotated = paths.split_annotation(query.get("filename", ""))
    if not filename:
        raise BadRequest("missing_filename", "the filename query parameter is required")
    kind = annotated or query.get("type") or "output"
    channel = query.get("channel") or "rgba"
    if channel not in CHANNELS:
        raise BadRequest("invalid_channel", f"channel {channel!r} is not one of {', '.join(CHANNELS)}",
                         {"accepted": CHANNELS})
    preview = query.get("preview")
    try:
        path = await asyncio.to_thread(_existing, request, kind, query.get("subfolder", ""), filename)
    except PathEscape as exc:
        if exc.field == "filename":
            raise
        raise web.HTTPForbidden(text=exc.message) from None
    if isinstance(path, tuple):  # a task's temporary output
        await _check_owner(request, path[0], f"temp/{filename}")
        path = path[1]
    elif kind == "output":
        await _check_output_owner(request, folders_of(request).output_dir, path, filename)
    if preview is None and channel == "rgba":
        return web.FileResponse(path, headers=_raw_headers(path.name, request))
    cache = request.app.get(previews.PREVIEWS)
    body, content_type = await asyncio.to_thread(_render_cached, cache, services, path, channel, preview)
    return web.Response(body=body, content_type=content_type,
                        headers={"Content-Disposition": _disposition("inline", path.name),
                                 "X-Content-Type-Options": "nosniff"})


def _existing(request: web.Request, kind: str, subfolder: str, filename: str) -> Path | tuple[int, Path]:
    """The file a ``view`` names: in the caller's folders, else (``temp``) a task's temporary output as
    ``(task id, path)``."""
    folders = folders_of(request)
    try:
        return folders.existing(kind, subfolder, filename)
    except NotFound:
        found = paths.task_temp_file(folders.root, subfolder, filename) if kind == "temp" else None
        if found is None:
            raise
        return found


async def _check_output_owner(request: web.Request, output_dir: Path, path: Path, filename: str) -> None:
    """An output lies in its task's folder (``output/<task id>/...``): to a user, another user's is not there."""
    first = path.relative_to(output_dir).parts[0]
    if not first.isdigit() and not identity(request).is_admin:
        raise NotFound("file", f"output/{filename}")
    await _check_owner(request, int(first) if first.isdigit() else None, f"output/{filename}")


async def _check_owner(request: web.Request, task_id: int | None, shown: str) -> None:
    """``NotFound`` (as if the file were missing) when the caller may not see task ``task_id``'s files."""
    if identity(request).is_admin or task_id is None:
        return
    try:
        await check_task_owner(request, task_id)
    except NotFound:
        raise NotFound("file", shown) from None


def _raw_headers(name: str, request: web.Request) -> dict[str, str]:
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff", "Content-Type": content_type,
               "Content-Disposition": _disposition("inline", name)}
    svg_as_image = content_type == "image/svg+xml" and request.headers.get("Sec-Fetch-Dest") == "image"
    if any(word in content_type for word in _SCRIPTABLE) and not svg_as_image:
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Disposition"] = _disposition("attachment", name)
    return headers


def _disposition(kind: str, name: str) -> str:
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(name)}"


def _render_cached(cache: previews.PreviewCache | None, services: Services, path: Path, channel: str,
                   preview: str | None) -> tuple[bytes, str]:
    """:func:`_render`, through ``cache`` when the app has one (runs in a thread)."""
    if cache is None:
        return _render(services, path, channel, preview)
    rendering = (channel, _preview_format(preview, channel) if preview is not None else None)
    try:
        key = cache.key_of(path, *rendering)
    except OSError:
        raise NotFound("file", path.name) from None
    return cache.get_or_render(key, lambda: _render(services, path, channel, preview))


def _render(services: Services, path: Path, channel: str, preview: str | None) -> tuple[bytes, str]:
    """The image at ``path`` with ``channel`` applied, as PNG or as the ``preview`` format (at most
    ``PREVIEW_MAX_SIDE_PX`` a side)."""
    services.storage.check_image(path, services.max_image_pixels)
    with Image.open(path) as image:
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        if preview is not None:
            image.thumbnail((PREVIEW_MAX_SIDE_PX, PREVIEW_MAX_SIDE_PX))
        if channel == "rgb":
            picture = image.convert("RGB")
        elif channel == "a":
            alpha = image.convert("RGBA").getchannel("A") if has_alpha else Image.new("L", image.size, 255)
            picture = Image.new("RGBA", image.size, (0, 0, 0, 0))
            picture.putalpha(alpha)
        else:
            picture = image.convert("RGBA" if has_alpha else "RGB")
    out = io.BytesIO()
    if preview is None:
        picture.save(out, format="PNG")
        return out.getvalue(), "image/png"
    image_format, quality = _preview_format(preview, channel)
    if image_format == "jpeg":
        picture = picture.convert("RGB")
    picture.save(out, format=image_format.upper(), quality=quality)
    return out.getvalue(), f"image/{image_format}"


def _preview_format(preview: str, channel: str) -> tuple[str, int]:
    """``("webp", 90)`` for ``"webp;90"``; like ComfyUI, an unknown format or a channel with alpha gives webp."""
    parts = preview.split(";")
    image_format = parts[0].strip().lower()
    if image_format not in PREVIEW_FORMATS or "a" in channel:
        image_format = "webp"
    quality = DEFAULT_PREVIEW_QUALITY
    if len(parts) > 1 and parts[-1].strip().isdigit():
        quality = max(1, min(100, int(parts[-1].strip())))
    return image_format, quality


# -- uploads -----------------------------------------------------------------------------------------------------


@dataclass
class UploadForm:
    staged: Path | None = None
    sha256: str = ""
    filename: str = ""
    kind: str = "input"
    subfolder: str = ""
    overwrite: bool = False
    original_ref: str | None = None


async def upload_image(request: web.Request) -> web.Response:
    return await _upload(request, mask=False)


async def upload_mask(request: web.Request) -> web.Response:
    return await _upload(request, mask=True)


async def _upload(request: web.Request, *, mask: bool) -> web.Response:
    services = request.app[SERVICES]
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(request.content_type, ["multipart/form-data"])
    staging = Staging(services.storage)
    try:
        form = await _read_form(request, services, staging)
        reply = await asyncio.to_thread(_store, services, folders_of(request), form, mask)
    finally:
        await asyncio.to_thread(staging.discard)
    return web.json_response(reply, dumps=jsonio.dumps)


async def _read_form(request: web.Request, services: Services, staging: Staging) -> UploadForm:
    form = UploadForm()
    reader = await multipart.open_reader(request)
    while (part := await multipart.next_part(reader)) is not None:
        if part.name == "image":
            await _receive_image(part, form, services, staging)
        elif part.name in ("type", "subfolder", "overwrite", "original_ref"):
            value = await multipart.read_text(part, part.name, MAX_FIELD_BYTES)
            if part.name == "type":
                form.kind = value or "input"
            elif part.name == "subfolder":
                form.subfolder = value
            elif part.name == "overwrite":
                form.overwrite = value.strip().lower() in ("true", "1")
            else:
                form.original_ref = value
    if form.staged is None:
        raise BadRequest("missing_file", "the multipart body has no 'image' file part")
    if form.kind not in UPLOAD_TYPES:
        raise BadRequest("invalid_type", f"type {form.kind!r}: uploads go to {' or '.join(UPLOAD_TYPES)} (the output "
                         "folder holds task results only)", {"accepted": UPLOAD_TYPES})
    return form


async def _receive_image(part: BodyPartReader, form: UploadForm, services: Services, staging: Staging) -> None:
    if form.staged is not None:
        raise BadRequest("duplicate_file", "the multipart body has more than one 'image' part")
    filename = part.filename or ""
    if not filename:
        raise BadRequest("missing_filename", "the 'image' part has no file name")
    if len(paths.split_parts("filename", filename)) > 1:  # a bad name is refused before the bytes are received
        raise paths.BadName("filename", filename, "an uploaded file's name holds no '/'; send the folder as "
                            "'subfolder'")
    staged = staging.folder() / "upload"
    info = await services.storage.save_stream(staged, multipart.chunks(part))
    form.staged, form.sha256, form.filename = staged, info.sha256, filename


def _store(services: Services, folders: ComfyFolders, form: UploadForm, mask: bool) -> dict[str, str]:
    """Check the staged image and link it into the caller's ``folders``; the reply ``{"name", "subfolder",
    "type"}`` (in a thread)."""
    assert form.staged is not None
    services.storage.check_image(form.staged, services.max_image_pixels)
    staged, sha256, filename = form.staged, form.sha256, form.filename
    if mask:
        staged = _compose_mask(services, folders, staged, _original_ref(form.original_ref))
        sha256 = file_info(staged).sha256
        filename = str(Path(filename).with_suffix(".png"))
    target = folders.target(form.kind, form.subfolder, filename)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise paths.BadName("subfolder", form.subfolder, "a file of that name is in the way") from None
    name = _place(staged, target, sha256, overwrite=form.overwrite)
    subfolder = target.parent.relative_to(folders.folder(form.kind)).as_posix()
    return {"name": name, "subfolder": "" if subfolder == "." else subfolder, "type": form.kind}


def _place(staged: Path, target: Path, sha256: str, *, overwrite: bool) -> str:
    """Put ``staged`` at ``target`` or, when that name holds other content, at ``target (n).ext``; the name used."""
    if overwrite:
        os.replace(staged, target)
        return target.name
    stem, suffix = os.path.splitext(target.name)
    candidate = target
    for number in range(1, MAX_RENAMES + 1):
        try:
            os.link(staged, candidate)  # never replaces: an upload racing for the same name gets the next one
            return candidate.name
        except FileExistsError:
            if candidate.is_file() and not candidate.is_symlink() and file_info(candidate).sha256 == sha256:
                return candidate.name
        candidate = target.with_name(f"{stem} ({number}){suffix}")
    raise Conflict(f"{target.name!r} and {MAX_RENAMES} numbered variants of it are all taken")


def _original_ref(raw: str | None) -> dict[str, str]:
    if raw is None:
        raise BadRequest("missing_original_ref", "upload/mask needs an 'original_ref' field")
    try:
        ref = jsonio.loads(raw)
    except jsonio.JsonRefused as exc:
        raise BadRequest("invalid_original_ref", f"original_ref {exc}") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str) or not ref["filename"]:
        raise BadRequest("invalid_original_ref", 'original_ref must be a JSON object {"filename", "subfolder", '
                         '"type"} with a non-empty filename')
    fields: dict[str, Any] = {"subfolder": "", "type": "output", **ref}
    for key in ("subfolder", "type"):
        if not isinstance(fields[key], str):
            raise BadRequest("invalid_original_ref", f"original_ref.{key} must be a string")
    return {key: fields[key] for key in ("filename", "subfolder", "type")}


def _compose_mask(services: Services, folders: ComfyFolders, staged: Path, ref: dict[str, str]) -> Path:
    """The original image with the uploaded image's alpha channel, written as PNG beside ``staged``."""
    filename, annotated = paths.split_annotation(ref["filename"])
    original = folders.existing(annotated or ref["type"] or "output", ref["subfolder"], filename)
    services.storage.check_image(original, services.max_image_pixels)
    with Image.open(original) as source, Image.open(staged) as uploaded:
        if source.size != uploaded.size:
            raise BadRequest("size_mismatch", f"the mask is {uploaded.width}x{uploaded.height}, the original "
                             f"image {source.width}x{source.height}")
        picture = source.convert("RGBA")
        picture.putalpha(uploaded.convert("RGBA").getchannel("A"))
    composed = staged.with_name("mask.png")
    picture.save(composed, format="PNG", compress_level=4)
    return composed
