"""ControlNetLoader, ControlNetApply and ControlNetApplyAdvanced with ComfyUI's inputs, outputs and semantics.

A ControlNet file (SD1/SD2/SDXL, LDM single file or diffusers layout) loads through the worker's model manager
(:mod:`visionatrix.diffusion.controlnet`). Applying one copies each conditioning entry's options and sets
``control`` to an :class:`~visionatrix.diffusion.controlnet.AppliedControl` whose ``previous`` is the entry's
existing control, so controls chain; the sampler asks the chain for residuals at each step.
"""

from __future__ import annotations

from typing import Any

from visionatrix.diffusion.controlnet import AppliedControl, ControlNet, load_controlnet
from visionatrix.errors import InvalidInput
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of, path_of, version_of

FOLDER = "controlnet"
CATEGORY = "conditioning/controlnet"
STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})


class ControlNetLoader:
    DESCRIPTION = ("Loads a ControlNet (SD1.x, SD2.x or SDXL; single-file or diffusers layout) from the controlnet "
                   "folder.")
    CATEGORY = "loaders"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"control_net_name": (files_of(FOLDER),)}}

    @classmethod
    def IS_CHANGED(cls, control_net_name: Any) -> str | float:
        return version_of(FOLDER, control_net_name, "control_net_name")

    def load_controlnet(self, control_net_name: str) -> tuple[ControlNet]:
        path = path_of(FOLDER, control_net_name, "control_net_name")
        return (load_controlnet(path, context.current()),)


def _check(control_net: Any, image: Any) -> None:
    if not isinstance(control_net, ControlNet):
        raise InvalidInput("control_net", f"expected a CONTROL_NET, got {type(control_net).__name__}")
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) != 4:
        raise InvalidInput("image", f"expected an IMAGE [batch, height, width, channels], got shape {list(shape)}")
    if shape[-1] != control_net.conditioning_channels:
        raise InvalidInput("image", f"{control_net.label} takes {control_net.conditioning_channels}-channel images, "
                                    f"got {shape[-1]} channels")


def _check_percents(start_percent: float, end_percent: float) -> None:
    for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
        if not 0.0 <= float(value) <= 1.0:
            raise InvalidInput(name, f"must be between 0 and 1, got {value}")


class ControlNetApply:
    DESCRIPTION = ("Applies a ControlNet to one conditioning for the whole sampling (the negative conditioning gets "
                   "it too when it has none, as ComfyUI's old node).")
    CATEGORY = CATEGORY
    DEPRECATED = True
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",), "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",), "strength": STRENGTH}}

    def apply_controlnet(self, conditioning: list, control_net: ControlNet, image: Any,
                         strength: float) -> tuple[list]:
        if strength == 0:
            return (conditioning,)
        _check(control_net, image)
        out = []
        for cond, options in conditioning:
            new = dict(options)
            new["control"] = AppliedControl(net=control_net, hint=image, strength=float(strength),
                                            previous=options.get("control"))
            new["control_apply_to_uncond"] = True
            out.append([cond, new])
        return (out,)


class ControlNetApplyAdvanced:
    DESCRIPTION = ("Applies a ControlNet to the positive and negative conditioning, with a strength and the part of "
                   "sampling it acts on (start and end percent).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        percent = {"min": 0.0, "max": 1.0, "step": 0.001}
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",), "image": ("IMAGE",), "strength": STRENGTH,
                             "start_percent": ("FLOAT", {"default": 0.0, **percent}),
                             "end_percent": ("FLOAT", {"default": 1.0, **percent})},
                "optional": {"vae": ("VAE",)}}

    def apply_controlnet(self, positive: list, negative: list, control_net: ControlNet, image: Any, strength: float,
                         start_percent: float = 0.0, end_percent: float = 1.0, vae: Any = None) -> tuple[list, list]:
        """``vae`` is accepted as ComfyUI's (SD ControlNets take the hint in pixels and do not use it)."""
        if strength == 0:
            return (positive, negative)
        _check(control_net, image)
        _check_percents(start_percent, end_percent)
        applied: dict[int, AppliedControl] = {}  # one per previous control (None included), shared across entries
        outputs = []
        for conditioning in (positive, negative):
            entries = []
            for cond, options in conditioning:
                new = dict(options)
                previous = options.get("control")
                control = applied.get(id(previous))
                if control is None:
                    control = AppliedControl(net=control_net, hint=image, strength=float(strength),
                                             start_percent=float(start_percent), end_percent=float(end_percent),
                                             previous=previous)
                    applied[id(previous)] = control
                new["control"] = control
                new["control_apply_to_uncond"] = False
                entries.append([cond, new])
            outputs.append(entries)
        return outputs[0], outputs[1]


NODE_CLASS_MAPPINGS = {"ControlNetLoader": ControlNetLoader, "ControlNetApply": ControlNetApply,
                       "ControlNetApplyAdvanced": ControlNetApplyAdvanced}
NODE_DISPLAY_NAME_MAPPINGS = {"ControlNetLoader": "Load ControlNet Model", "ControlNetApply": "Apply ControlNet (OLD)",
                              "ControlNetApplyAdvanced": "Apply ControlNet"}
