"""Reading ``multipart/form-data`` bodies part by part; a broken or truncated body is a 400 naming the problem."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, MultipartReader, web

from visionatrix.errors import TooLarge
from visionatrix.server.errors import BadRequest

CHUNK_BYTES = 256 * 1024


def _broken(exc: Exception) -> BadRequest:
    return BadRequest("invalid_multipart", f"the multipart body cannot be read: {exc}")


async def open_reader(request: web.Request) -> MultipartReader:
    try:
        return await request.multipart()
    except (ValueError, AssertionError) as exc:  # a missing or broken boundary
        raise _broken(exc) from None


async def next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except ValueError as exc:  # aiohttp's parser reports a broken body as ValueError
        raise _broken(exc) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise BadRequest("invalid_multipart", "nested multipart bodies are not accepted")
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
