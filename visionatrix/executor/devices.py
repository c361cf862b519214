"""Which device the executor runs on: CUDA when present, else CPU."""

from __future__ import annotations

from typing import Any

from visionatrix.hostinfo import host_memory


def pick_device(preferred: str | None = None) -> str:
    """``preferred`` when given (``"cpu"``, ``"cuda"``, ``"cuda:1"``), else ``"cuda:0"`` if CUDA works, else CPU."""
    import torch

    if preferred:
        if preferred.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available")
        return "cuda:0" if preferred == "cuda" else preferred
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def device_resources(device: str) -> dict[str, Any]:
    """What a worker reports about its memory (bytes; None where unknown): ``device_name``, ``device_memory_total``
    and ``device_memory_free`` (the GPU's; for the CPU, the host's RAM), ``ram_total``, ``ram_free``. Cheap enough
    to call with every report; never raises."""
    ram_total, ram_free = host_memory()
    ram = (ram_total or None, ram_free if ram_total else None)
    name, total, free = "cpu", ram[0], ram[1]
    if device.startswith("cuda"):
        try:
            import torch

            index = torch.device(device).index or 0
            free_bytes, total_bytes = torch.cuda.mem_get_info(index)
            name, total, free = f"{device} {torch.cuda.get_device_name(index)}", int(total_bytes), int(free_bytes)
        except Exception:  # a device that went away must not stop the worker's report
            name, total, free = device, None, None
    return {"device_name": name, "device_memory_total": total, "device_memory_free": free,
            "ram_total": ram[0], "ram_free": ram[1]}


def reset_peak_vram(device: str) -> None:
    """Start measuring the peak of memory allocated on ``device`` anew (nothing on a CPU device)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_vram_bytes(device: str) -> int | None:
    """The most bytes torch held allocated on ``device`` since :func:`reset_peak_vram`; None on a CPU device."""
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated(torch.device(device)))
