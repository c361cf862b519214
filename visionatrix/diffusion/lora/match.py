"""A LoRA file's tensors matched to the weights of a model's networks: :func:`lora_patches`.

The file's keys are grouped into LoRA modules (``<module name>.<role suffix>``), each module name is looked up in
the index of accepted names (:mod:`visionatrix.diffusion.lora.keymap`; for the fused tensors of Flux and SD3,
:mod:`visionatrix.diffusion.lora.dit_keys`), and every module that names a weight whose shape its factors fit
becomes one :class:`~visionatrix.diffusion.lora.patches.LoraPatch` (one per row slice for a fused tensor; a
``diff_b`` beside it also patches the layer's bias). A module that names
nothing, or whose factors do not fit, is reported in :attr:`LoraMatch.unmatched` (and logged); a file of which no
module matches is a :class:`ModelFileError` saying how many of its modules there were.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.lora import dit_keys, keymap
from visionatrix.diffusion.lora.patches import LoraPatch, TensorSource, numel
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

    from visionatrix.diffusion.patches import Patch

log = logging.getLogger(__name__)

ROLES: tuple[tuple[str, str], ...] = tuple(sorted((
    (".lora_down.weight", "down"), (".lora_up.weight", "up"), (".lora_mid.weight", "mid"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora.down.weight", "down"), (".lora.up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"), (".lora_linear_layer.up.weight", "up"),
    (".alpha", "alpha"), (".dora_scale", "dora_scale"),
    (".hada_w1_a", "w1_a"), (".hada_w1_b", "w1_b"), (".hada_w2_a", "w2_a"), (".hada_w2_b", "w2_b"),
    (".hada_t1", "t1"), (".hada_t2", "t2"),
    (".lokr_w1", "w1"), (".lokr_w2", "w2"), (".lokr_w1_a", "w1_a"), (".lokr_w1_b", "w1_b"),
    (".lokr_w2_a", "w2_a"), (".lokr_w2_b", "w2_b"), (".lokr_t2", "t2"), (".diff", "diff"), (".diff_b", "diff_b"),
), key=lambda pair: -len(pair[0])))
"""Key suffix -> role, longest first (``.lora.down.weight`` before ``.down.weight`` of old processor files)."""
OLD_PROCESSOR_ROLES = ((".down.weight", "down"), (".up.weight", "up"))
"""Old diffusers attention-processor files: ``...processor.to_q_lora.down.weight``; XLabs' Flux files:
``...processor.qkv_lora1.down.weight``."""
PROCESSOR_NAME_ENDS = ("_lora", "_lora1", "_lora2")
REQUIRED = {"lora": ("up", "down"), "loha": ("w1_a", "w1_b", "w2_a", "w2_b"), "lokr": ()}
FAMILY_MARKERS = (
    # (a piece of a LoRA module name, the family it shows)
    ("double_blocks", "Flux"), ("single_blocks", "Flux"), ("single_transformer_blocks", "Flux"),
    ("joint_blocks", "SD3"), ("input_blocks", "SD1/SD2/SDXL"), ("output_blocks", "SD1/SD2/SDXL"),
    ("down_blocks", "SD1/SD2/SDXL"), ("up_blocks", "SD1/SD2/SDXL"), ("mid_block", "SD1/SD2/SDXL"),
)
EXAMPLES = 3


@dataclass
class LoraMatch:
    """The patches of one LoRA per target, and how many of its modules matched."""

    patches: dict[str, list[Patch]] = field(default_factory=dict)
    matched: int = 0
    total: int = 0
    """LoRA modules in the file."""
    unmatched: list[str] = field(default_factory=list)
    """Names of the modules that matched no weight (or whose factors do not fit it)."""


def lora_patches(state_dict: TensorSource, targets: Mapping[str, Module], strength_model: float,
                 strength_clip: float, path: object = "<state dict>") -> LoraMatch:
    """The patches a LoRA (``state_dict``: its tensors by key, e.g. a :class:`LoraFile`) makes to ``targets``
    (``unet``: a ``UNet2DConditionModel``, ``FluxTransformer2DModel`` or ``SD3Transformer2DModel``; ``clip_l``,
    ``clip_g``, ``open_clip``, ``t5xxl``). ``strength_model`` scales the UNet's patches, ``strength_clip`` the text
    encoders'; a strength of 0 gives no patches for those targets (their modules still count as matched). A module
    on a fused tensor of a DiT's original layout gives one row-slice patch per diffusers weight.
    :class:`ModelFileError` when no module of the file matches any target (naming the LoRA's family and the
    model's when they differ)."""
    modules = group_modules(state_dict.keys())
    index = keymap.build_index(targets)
    fused = dit_keys.fused_index(targets)
    shapes = {name: {key: tuple(p.shape) for key, p in module.named_parameters()} for name, module in targets.items()}
    result = LoraMatch(patches={name: [] for name in targets}, total=len(modules))
    for name, roles in modules.items():
        normalized = keymap.normalize(name)
        found = index.get(normalized)
        entry = fused.get(normalized)
        target = found[0] if found is not None else entry.target if entry is not None else ""
        strength = strength_model if target == "unet" else strength_clip
        patches: list[LoraPatch] | None = None
        pieces: list[tuple[str, tuple[int, int] | None, bool]] = []
        if found is not None:
            patch = None if _bias_only(roles) else _patch(found, roles, state_dict, shapes, strength_model,
                                                           strength_clip)
            patches = [] if _bias_only(roles) else None if patch is None else [patch]
            pieces = [(found[1], None, False)]
        elif entry is not None:
            patches = [] if _bias_only(roles) else _fused_patches(entry, roles, state_dict, shapes, strength)
            pieces = [(piece.key, (piece.start, piece.stop), piece.swap) for piece in entry.slices]
        if patches is not None and "diff_b" in roles:
            biases = _bias_patches(target, pieces, roles["diff_b"], state_dict, shapes, strength)
            patches = None if biases is None else patches + biases
        if patches is None:
            result.unmatched.append(name)
            continue
        result.matched += 1
        result.patches[target].extend(patch for patch in patches if patch.strength != 0)
    if result.matched == 0:
        examples = ", ".join(list(state_dict.keys())[:EXAMPLES])
        raise ModelFileError(path, f"no LoRA key matches this model (0 of {result.total} matched; e.g. {examples})"
                                   + _families_hint(modules, targets))
    if result.unmatched:
        log.warning("LoRA %s: %d of %d modules matched; not matched: %s", path, result.matched, result.total,
                    ", ".join(result.unmatched[:10]) + (" ..." if len(result.unmatched) > 10 else ""))
    return result


def group_modules(keys: Any) -> dict[str, dict[str, str]]:
    """File keys grouped by LoRA module name: ``{module: {role: key}}``; a key of no known role is its own module
    (role ``unknown``), so it counts and shows as unmatched."""
    modules: dict[str, dict[str, str]] = {}
    for key in keys:
        name, role = split_key(key)
        modules.setdefault(name, {})[role] = key
    return modules


def split_key(key: str) -> tuple[str, str]:
    """(module name, role) of one file key."""
    for suffix, role in ROLES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    for suffix, role in OLD_PROCESSOR_ROLES:
        if key.endswith(suffix) and key[: -len(suffix)].endswith(PROCESSOR_NAME_ENDS):
            return key[: -len(suffix)], role
    return key, "unknown"


def _patch(found: tuple[str, str], roles: Mapping[str, str], state_dict: TensorSource,
           shapes: Mapping[str, Mapping[str, tuple[int, ...]]], strength_model: float, strength_clip: float,
           ) -> LoraPatch | None:
    target, key = found
    kind = _kind(roles)
    if kind is None:
        return None
    alpha = float(state_dict[roles["alpha"]]) if "alpha" in roles else None
    tensors = {role: file_key for role, file_key in roles.items() if role not in ("alpha", "unknown", "diff_b")}
    strength = strength_model if target == "unet" else strength_clip
    patch = LoraPatch(key=key, source=state_dict, kind=kind, tensors=tensors, alpha=alpha, strength=float(strength))
    weight_shape = shapes[target][key]
    try:
        rows, count = patch.product_shape()
        fits = rows == weight_shape[0] and count == numel(weight_shape) and _inner_fits(patch)
    except (KeyError, IndexError):
        fits = False
    return patch if fits else None


def _fused_patches(fused: dit_keys.Fused, roles: Mapping[str, str], state_dict: TensorSource,
                   shapes: Mapping[str, Mapping[str, tuple[int, ...]]], strength: float) -> list[LoraPatch] | None:
    """One patch per slice of a module on a fused (or half-swapped) original tensor; None when its product does
    not have the fused tensor's shape, or its DoRA magnitudes are not one per fused row (they cannot be split)."""
    kind = _kind(roles)
    if kind is None:
        return None
    alpha = float(state_dict[roles["alpha"]]) if "alpha" in roles else None
    tensors = {role: file_key for role, file_key in roles.items() if role not in ("alpha", "unknown", "diff_b")}
    whole = LoraPatch(key=fused.slices[0].key, source=state_dict, kind=kind, tensors=tensors, alpha=alpha,
                      strength=float(strength))
    columns = numel(shapes[fused.target][fused.slices[0].key][1:])
    try:
        rows, count = whole.product_shape()
        fits = rows == fused.rows and count == rows * columns and _inner_fits(whole)
        if "dora_scale" in tensors:
            fits = fits and whole.shape_of("dora_scale")[0] == fused.rows
    except (KeyError, IndexError):
        fits = False
    if not fits:
        return None
    return [dataclasses.replace(whole, key=piece.key, rows=(piece.start, piece.stop), swap=piece.swap)
            for piece in fused.slices]


def _bias_only(roles: Mapping[str, str]) -> bool:
    """A module that changes only its layer's bias (``diff_b``; an alpha beside it is ignored)."""
    return "diff_b" in roles and set(roles) <= {"diff_b", "alpha"}


def _bias_patches(target: str, pieces: list[tuple[str, tuple[int, int] | None, bool]], file_key: str,
                  state_dict: TensorSource, shapes: Mapping[str, Mapping[str, tuple[int, ...]]], strength: float,
                  ) -> list[LoraPatch] | None:
    """Full-difference patches of the biases beside ``pieces`` (weight key, rows of a fused tensor, swap); None when
    a layer has no bias or the difference does not have the (fused) bias's length."""
    biases = [(key.removesuffix("weight") + "bias", rows, swap) for key, rows, swap in pieces]
    if any(key not in shapes[target] for key, _, _ in biases):
        return None
    sizes = [shapes[target][key][0] if rows is None else rows[1] for key, rows, _ in biases]
    if tuple(state_dict[file_key].shape) != (max(sizes),):
        return None
    return [LoraPatch(key=key, source=state_dict, kind="full", tensors={"diff": file_key}, alpha=None,
                      strength=float(strength), rows=rows, swap=swap) for key, rows, swap in biases]


def _families_hint(modules: Mapping[str, Any], targets: Mapping[str, Module]) -> str:
    """``; the file looks like a <family> LoRA, the model is <family>`` when the names tell (else empty)."""
    counts: dict[str, int] = {}
    for name in modules:
        family = next((family for marker, family in FAMILY_MARKERS if marker in name), None)
        if family is not None:
            counts[family] = counts.get(family, 0) + 1
    if not counts:
        return ""
    unet = targets.get("unet")
    if unet is None:
        model = "text encoders only"
    else:
        model = {dit_keys.FLUX: "Flux", dit_keys.SD3: "SD3"}.get(dit_keys.family(unet) or "", "") or (
            "SD1/SD2/SDXL" if type(unet).__name__ == "UNet2DConditionModel" else type(unet).__name__)
    lora = max(counts, key=counts.__getitem__)
    return "" if lora == model else f"; the file looks like a {lora} LoRA, the model is {model}"


def _kind(roles: Mapping[str, str]) -> str | None:
    if "diff" in roles:
        return "full"
    if "up" in roles and "down" in roles:
        return "lora"
    if all(role in roles for role in REQUIRED["loha"]) and "w1" not in roles:
        return "loha"
    has_w1 = "w1" in roles or ("w1_a" in roles and "w1_b" in roles)
    has_w2 = "w2" in roles or ("w2_a" in roles and "w2_b" in roles)
    if has_w1 and has_w2 and "t1" not in roles:
        return "lokr"
    return None


def _inner_fits(patch: LoraPatch) -> bool:
    """The factors chain: LoRA's up columns equal down's rows (or the Tucker core's)."""
    shape = patch.shape_of
    if patch.kind != "lora":
        return True
    up_columns = numel(shape("up")[1:])
    if "mid" in patch.tensors:
        mid = shape("mid")
        return up_columns == mid[0] and mid[1] == shape("down")[0]
    return up_columns == shape("down")[0]


class LoraFile(torch.nn.Module):
    """A LoRA file's tensors as one object the model manager can hold, move and account for: each tensor is a
    buffer (so ``to()`` moves them and their bytes count), read back by its file key like a mapping."""

    supports_half = True
    """On CUDA the manager keeps the factors in fp16 (deltas are still computed in float32)."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.slots: dict[str, str] = {}
        for number, (key, tensor) in enumerate(tensors.items()):
            slot = f"t{number}"
            self.register_buffer(slot, tensor)
            self.slots[key] = slot

    def __getitem__(self, key: str) -> Tensor:
        return self._buffers[self.slots[key]]  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return key in self.slots

    def keys(self) -> Any:
        return self.slots.keys()

    def items(self) -> Any:
        return ((key, self[key]) for key in self.slots)

    def tensor_count(self) -> int:
        return len(self.slots)
