"""Facts about the host machine that any layer may report."""

from __future__ import annotations

import os
from pathlib import Path


def host_memory() -> tuple[int, int]:
    """The host's ``(total, available)`` RAM in bytes: from ``/proc/meminfo``, else ``sysconf``; zeros where neither
    answers."""
    try:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if rest.split():
                fields[key] = int(rest.split()[0]) * 1024
        return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0))
    except (OSError, KeyError, ValueError):
        pass
    try:
        page_bytes = os.sysconf("SC_PAGE_SIZE")
        return page_bytes * os.sysconf("SC_PHYS_PAGES"), page_bytes * os.sysconf("SC_AVPHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 0, 0
