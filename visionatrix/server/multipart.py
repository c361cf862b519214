"""Reading ``multipart/form-data`` bodies part by part; a broken or truncated body is a 400 naming the problem."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from visionatrix.errors import TooLarge
from visionatrix.server.errors import BadRequest

CHUNK_BYTES = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _broken(exc: Exception) -> BadRequest:
    reason = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    return BadRequest("invalid_multipart", f"the multipart body cannot be read: {reason.strip()}")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")  # bytes that were not UTF-8 arrive as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _check_names(part: BodyPartReader) -> None:
    """A part's name and file name are UTF-8 text without control characters (NUL, line breaks, ...)."""
    for field, value in (("name", part.name), ("file name", part.filename)):
        if value is None:
            continue
        if _CONTROL.search(value) or not _is_utf8(value):
            raise BadRequest("invalid_multipart", f"a part's {field} {value!r} holds a control character or bytes "
                             "that are not UTF-8")


async def open_reader(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except (ValueError, AssertionError) as exc:  # a missing or broken boundary
        raise _broken(exc) from None


async def next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except (ValueError, HttpProcessingError) as exc:  # a broken body; a control character in a part's headers
        raise _broken(exc) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise BadRequest("invalid_multipart", "nested multipart bodies are not accepted")
    if part is not None:
        _check_names(part)
    return part


async def read_chunk(part: BodyPartReader) -> bytes:
    """The next chunk of ``part``; ``b""`` at its end."""
    try:
        return await part.read_chunk(CHUNK_BYTES)
    except ValueError as exc:
        raise _broken(exc) from None


async def chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await read_chunk(part):
        yield chunk


async def read_bytes(part: BodyPartReader, what: str, max_bytes: int) -> bytes:
    """The whole part, refused with ``TooLarge`` past ``max_bytes``."""
    data = bytearray()
    async for chunk in chunks(part):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise TooLarge(what, max_bytes)
    return bytes(data)


async def read_text(part: BodyPartReader, what: str, max_bytes: int) -> str:
    data = await read_bytes(part, what, max_bytes)
    charset = part.get_charset(default="utf-8")
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise BadRequest("invalid_multipart", f"{what} is not {charset} text") from None
