"""CONDITIONING data nodes: combine, average, concatenate, area, mask, timestep range, zero out (ComfyUI's inputs,
defaults and option keys). CONDITIONING is a list of ``[tensor [1, tokens, width], options]``; every node returns
new lists, entries and option dicts and never changes its inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from visionatrix.errors import InvalidInput

MAX_RESOLUTION = 16384
STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})
PERCENT = {"min": 0.0, "max": 1.0, "step": 0.01}


def entries(name: str, conditioning: Any) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """The ``(tensor, options)`` pairs of a CONDITIONING input; InvalidInput naming it when it is not one."""
    if not isinstance(conditioning, list | tuple):
        raise InvalidInput(name, f"expected CONDITIONING (a list of [tensor, options]), got "
                                 f"{type(conditioning).__name__}")
    pairs = []
    for entry in conditioning:
        if (not isinstance(entry, list | tuple) or len(entry) != 2 or not isinstance(entry[0], torch.Tensor)
                or not isinstance(entry[1], Mapping)):
            raise InvalidInput(name, "each conditioning entry must be [tensor, options]")
        pairs.append((entry[0], dict(entry[1])))
    return pairs


def with_values(name: str, conditioning: Any, values: Mapping[str, Any]) -> list[list[Any]]:
    """Copies of the entries of ``conditioning`` with ``values`` set in their options."""
    return [[cond, {**options, **values}] for cond, options in entries(name, conditioning)]


def _first(name: str, conditioning: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    pairs = entries(name, conditioning)
    if not pairs:
        raise InvalidInput(name, "the conditioning is empty")
    return pairs[0]


def _same_width(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 3 or b.ndim != 3 or a.shape[-1] != b.shape[-1]:
        raise InvalidInput(name, f"conditioning {list(b.shape)} does not fit {list(a.shape)} (text conditionings "
                                 "of different widths: from different model families?)")


class ConditioningCombine:
    DESCRIPTION = "Both conditionings together: the model is guided by each of their entries."
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}}

    def combine(self, conditioning_1: Any, conditioning_2: Any) -> tuple[list[Any]]:
        first = [[cond, options] for cond, options in entries("conditioning_1", conditioning_1)]
        return (first + [[cond, options] for cond, options in entries("conditioning_2", conditioning_2)],)


class ConditioningAverage:
    DESCRIPTION = ("A weighted average of conditioning_to and the first entry of conditioning_from (padded with "
                   "zeros or cut to conditioning_to's length); pooled outputs are averaged too.")
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "addWeighted"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",),
                             "conditioning_to_strength": ("FLOAT", {"default": 1.0, **PERCENT})}}

    def addWeighted(self, conditioning_to: Any, conditioning_from: Any,
                    conditioning_to_strength: float) -> tuple[list[Any]]:
        source, source_options = _first("conditioning_from", conditioning_from)
        pooled_from = source_options.get("pooled_output")
        weight = float(conditioning_to_strength)
        out = []
        for cond, options in entries("conditioning_to", conditioning_to):
            _same_width("conditioning_from", cond, source)
            other = source[:, :cond.shape[1]].to(device=cond.device, dtype=cond.dtype)
            if other.shape[1] < cond.shape[1]:
                pad = torch.zeros((other.shape[0], cond.shape[1] - other.shape[1], cond.shape[2]), dtype=cond.dtype,
                                  device=cond.device)
                other = torch.cat([other, pad], dim=1)
            pooled_to = options.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                options["pooled_output"] = pooled_to * weight + pooled_from.to(pooled_to.device) * (1.0 - weight)
            elif pooled_from is not None:
                options["pooled_output"] = pooled_from
            out.append([cond * weight + other * (1.0 - weight), options])
        return (out,)


class ConditioningConcat:
    DESCRIPTION = "Appends the tokens of the first entry of conditioning_from to each entry of conditioning_to."
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",)}}

    def concat(self, conditioning_to: Any, conditioning_from: Any) -> tuple[list[Any]]:
        source, _ = _first("conditioning_from", conditioning_from)
        out = []
        for cond, options in entries("conditioning_to", conditioning_to):
            _same_width("conditioning_from", cond, source)
            out.append([torch.cat([cond, source.to(device=cond.device, dtype=cond.dtype)], dim=1), options])
        return (out,)


class ConditioningSetArea:
    DESCRIPTION = "Limits the conditioning to a rectangle of the image (pixels, rounded down to latent cells of 8)."
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}
        offset = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"conditioning": ("CONDITIONING",), "width": ("INT", size), "height": ("INT", size),
                             "x": ("INT", offset), "y": ("INT", offset), "strength": STRENGTH}}

    def append(self, conditioning: Any, width: int, height: int, x: int, y: int, strength: float,
               ) -> tuple[list[Any]]:
        area = (int(height) // 8, int(width) // 8, int(y) // 8, int(x) // 8)
        return (with_values("conditioning", conditioning,
                            {"area": area, "strength": float(strength), "set_area_to_bounds": False}),)


class ConditioningSetAreaPercentage:
    DESCRIPTION = "Limits the conditioning to a rectangle given as fractions of the image's width and height."
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",), "width": ("FLOAT", {"default": 1.0, **PERCENT}),
                             "height": ("FLOAT", {"default": 1.0, **PERCENT}),
                             "x": ("FLOAT", {"default": 0.0, **PERCENT}), "y": ("FLOAT", {"default": 0.0, **PERCENT}),
                             "strength": STRENGTH}}

    def append(self, conditioning: Any, width: float, height: float, x: float, y: float, strength: float,
               ) -> tuple[list[Any]]:
        area = ("percentage", float(height), float(width), float(y), float(x))
        return (with_values("conditioning", conditioning,
                            {"area": area, "strength": float(strength), "set_area_to_bounds": False}),)


class ConditioningSetMask:
    DESCRIPTION = ("Limits the conditioning to a mask (weighted by it); 'mask bounds' also crops the conditioning to "
                   "the mask's bounding box.")
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",), "mask": ("MASK",), "strength": STRENGTH,
                             "set_cond_area": (["default", "mask bounds"],)}}

    def append(self, conditioning: Any, mask: Any, set_cond_area: str, strength: float) -> tuple[list[Any]]:
        if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
            raise InvalidInput("mask", "expected a MASK [batch, height, width]")
        if mask.ndim < 3:
            mask = mask.unsqueeze(0)
        values = {"mask": mask, "set_area_to_bounds": set_cond_area != "default", "mask_strength": float(strength)}
        return (with_values("conditioning", conditioning, values),)


class ConditioningSetTimestepRange:
    DESCRIPTION = "Applies the conditioning only between start and end (fractions of the sampling, 0 = first step)."
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_range"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})}}

    def set_range(self, conditioning: Any, start: float, end: float) -> tuple[list[Any]]:
        values = {"start_percent": float(start), "end_percent": float(end)}
        return (with_values("conditioning", conditioning, values),)


class ConditioningZeroOut:
    DESCRIPTION = "The conditioning with its tensor and pooled output replaced by zeros."
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "zero_out"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",)}}

    def zero_out(self, conditioning: Any) -> tuple[list[Any]]:
        out = []
        for cond, options in entries("conditioning", conditioning):
            for key in ("pooled_output", "conditioning_lyrics"):
                if isinstance(options.get(key), torch.Tensor):
                    options[key] = torch.zeros_like(options[key])
            out.append([torch.zeros_like(cond), options])
        return (out,)


NODE_CLASS_MAPPINGS = {
    "ConditioningCombine": ConditioningCombine,
    "ConditioningAverage": ConditioningAverage,
    "ConditioningConcat": ConditioningConcat,
    "ConditioningSetArea": ConditioningSetArea,
    "ConditioningSetAreaPercentage": ConditioningSetAreaPercentage,
    "ConditioningSetMask": ConditioningSetMask,
    "ConditioningSetTimestepRange": ConditioningSetTimestepRange,
    "ConditioningZeroOut": ConditioningZeroOut,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ConditioningCombine": "Conditioning (Combine)",
    "ConditioningAverage": "Conditioning (Average)",
    "ConditioningConcat": "Conditioning (Concat)",
    "ConditioningSetArea": "Conditioning (Set Area)",
    "ConditioningSetAreaPercentage": "Conditioning (Set Area with Percentage)",
    "ConditioningSetMask": "Conditioning (Set Mask)",
    "ConditioningSetTimestepRange": "ConditioningSetTimestepRange",
    "ConditioningZeroOut": "ConditioningZeroOut",
}
