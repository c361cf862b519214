"""Re-encoded images of ``/view`` (``preview=webp;90``, ``channel=rgb``...): bounded and remembered.

Re-encoding a big image takes seconds of CPU, so a page that shows the same preview again must not pay for it
again. :class:`PreviewCache` keeps rendered bodies in memory, least recently used first out, within ``max_bytes``;
the key is the file (path, inode, size, modification time) and the rendering (channel, format, quality), so a
file that changes or is replaced under the same name is rendered anew, and a deleted task's previews are never
served (``/view`` checks the file exists first) and age out. Identical requests arriving together wait for one
rendering; at most ``max_renders`` renderings run at once (in threads, off the event loop). A body larger than a
quarter of the budget is served but not kept.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

from aiohttp import web

Rendered = tuple[bytes, str]
DEFAULT_MAX_BYTES = 64 * 1024**2
DEFAULT_MAX_RENDERS = 2


class PreviewCache:
    """Rendered ``(body, content type)`` by key, bounded in bytes; counts ``renders`` and ``hits``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_renders: int = DEFAULT_MAX_RENDERS) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.renders = 0
        self.hits = 0
        self._entries: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}
        self._slots = threading.BoundedSemaphore(max_renders)

    @staticmethod
    def key_of(path: Path, *rendering: Hashable) -> Hashable:
        """The key of ``path`` as it is now, rendered as ``rendering``."""
        stat = os.stat(path)
        return (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, *rendering)

    def get_or_render(self, key: Hashable, render: Callable[[], Rendered]) -> Rendered:
        """The cached rendering of ``key``, or ``render()`` (once, however many callers ask at the same time)."""
        with self._lock:
            found = self._take(key)
            if found is not None:
                return found
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                found = self._take(key)
                if found is not None:
                    return found
            try:
                with self._slots:
                    rendered = render()
                    self.renders += 1
            finally:
                with self._lock:
                    self._pending.pop(key, None)
            self._keep(key, rendered)
            return rendered

    def _take(self, key: Hashable) -> Rendered | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def _keep(self, key: Hashable, rendered: Rendered) -> None:
        size = len(rendered[0])
        if size * 4 > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = rendered
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (body, _) = self._entries.popitem(last=False)
                self.nbytes -= len(body)

    def __len__(self) -> int:
        return len(self._entries)


PREVIEWS = web.AppKey("comfy_previews", PreviewCache)


def setup(app: web.Application, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Give ``app``'s ``/view`` routes a preview cache."""
    app[PREVIEWS] = PreviewCache(max_bytes)
