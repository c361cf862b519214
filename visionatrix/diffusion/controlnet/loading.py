"""Loading a ControlNet file through the model manager (once per file version, dtype and device)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints.detect import shapes_of
from visionatrix.diffusion.controlnet import convert, detect
from visionatrix.diffusion.controlnet.control import ControlNet
from visionatrix.errors import ModelError

if TYPE_CHECKING:
    from visionatrix.nodes.context import NodeContext

KIND = "controlnet"


def controlnet_dtype(device: str) -> Any:
    """fp16 on CUDA, float32 on the CPU (as the UNet)."""
    import torch

    return torch.float16 if str(device).startswith("cuda") else torch.float32


def load_controlnet(path: Path, ctx: NodeContext) -> ControlNet:
    """The :class:`ControlNet` of the file ``path``, built once and kept by ``ctx.models``; a file that is not an
    SD1/SD2/SDXL ControlNet is a :class:`~visionatrix.errors.ModelFileError` naming what was found."""
    if ctx.models is None:
        raise ModelError("no model manager in this node context: ControlNetLoader runs inside an executor")
    build = functools.partial(convert.build_controlnet, path=path)
    module = ctx.models.load(path, build, kind=KIND, dtype=controlnet_dtype(ctx.device))
    info = detect.detect(shapes_of(module.state_dict()), path)
    return ControlNet(module=module, family=info.family, name=Path(path).name)
