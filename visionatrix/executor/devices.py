"""Which device the executor runs on: CUDA when present, else CPU."""

from __future__ import annotations


def pick_device(preferred: str | None = None) -> str:
    """``preferred`` when given (``"cpu"``, ``"cuda"``, ``"cuda:1"``), else ``"cuda:0"`` if CUDA works, else CPU."""
    import torch

    if preferred:
        if preferred.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available")
        return "cuda:0" if preferred == "cuda" else preferred
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def describe_device(device: str) -> dict[str, object]:
    """Name and memory of a device, for logs and ``system_stats``."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        return {"name": f"{device} {props.name}", "type": "cuda", "vram_total": props.total_memory}
    return {"name": "cpu", "type": "cpu", "vram_total": 0}
