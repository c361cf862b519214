"""VAE nodes: VAELoader, VAEEncode, VAEDecode, their tiled forms and the two inpainting encoders (ComfyUI's inputs,
defaults and outputs; see :mod:`visionatrix.diffusion.vae`)."""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F

from visionatrix.diffusion import loading
from visionatrix.diffusion.checkpoints import convert, weights_fit
from visionatrix.diffusion.vae import Vae, crop_to_multiple, require_latent
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of, path_of, version_of

FOLDER = "vae"
LDM_PREFIXES = ("first_stage_model.", "vae.", "")
"""Where a VAE's ``encoder.conv_in.weight`` may sit: an extracted checkpoint part, a prefixed file, a plain file."""
PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
"""Attention names of diffusers' older VAE files."""
TILE_SIZE = ("INT", {"default": 512, "min": 64, "max": 4096, "step": 32})
OVERLAP = ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32})
TEMPORAL_SIZE = ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                         "tooltip": "Only used for video VAEs: amount of frames to decode at a time."})
TEMPORAL_OVERLAP = ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                            "tooltip": "Only used for video VAEs: amount of frames to overlap."})


def build_vae(state_dict: dict[str, Any], path: object = "<state dict>") -> Any:
    """An ``AutoencoderKL`` from a VAE file's tensors: the LDM layout (``encoder.down.0.block...``, with or without
    ``first_stage_model.``) or diffusers' (``encoder.down_blocks.0.resnets...``); config from shapes."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    prefix = next((p for p in LDM_PREFIXES if f"{p}encoder.conv_in.weight" in state_dict), None)
    if prefix is None:
        raise ModelFileError(path, "not a VAE: no encoder.conv_in.weight (nor under first_stage_model.); found "
                                   f"{_prefix_summary(state_dict)}")
    weights = {key[len(prefix):]: value for key, value in state_dict.items()
               if key.startswith(prefix) and key[len(prefix):].startswith(PARTS)}
    if "encoder.down.0.block.0.conv1.weight" in weights:
        ldm = {"first_stage_model." + key: value for key, value in weights.items()}
        config = convert.vae_diffusers_config({key: tuple(value.shape) for key, value in ldm.items()}, path)
        converted = convert_ldm_vae_checkpoint(ldm, config)
    elif "encoder.down_blocks.0.resnets.0.conv1.weight" in weights:
        converted = {_new_attention_name(key): value for key, value in weights.items()}
        config = _diffusers_config({key: tuple(value.shape) for key, value in converted.items()}, path)
    else:
        raise ModelFileError(path, "not a VAE in the LDM or diffusers layout: no encoder.down.0.block.0 nor "
                                   f"encoder.down_blocks.0.resnets.0 weights; found {_prefix_summary(state_dict)}")
    model: Any = AutoencoderKL(**config)
    weights_fit.load_strictly(model, converted, path, "VAE")
    return model.eval()


def _diffusers_config(shapes: dict[str, tuple[int, ...]], path: object) -> dict[str, Any]:
    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ModelFileError(path, f"VAE weight {key!r} is missing")
        return shapes[key]

    levels = _count(shapes, r"encoder\.down_blocks\.(\d+)\.")
    blocks = _count(shapes, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    widths = tuple(shape(f"encoder.down_blocks.{level}.resnets.0.conv1.weight")[0] for level in range(levels))
    return {
        "in_channels": shape("encoder.conv_in.weight")[1], "out_channels": shape("decoder.conv_out.weight")[0],
        "down_block_types": ("DownEncoderBlock2D",) * levels, "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": widths, "layers_per_block": blocks,
        "latent_channels": shape("decoder.conv_in.weight")[1],
        "use_quant_conv": "quant_conv.weight" in shapes, "use_post_quant_conv": "post_quant_conv.weight" in shapes,
        "mid_block_add_attention": "encoder.mid_block.attentions.0.to_q.weight" in shapes,
    }


def _new_attention_name(key: str) -> str:
    module, _, param = key.rpartition(".")
    head, _, last = module.rpartition(".")
    if ".attentions." in module and last in OLD_ATTENTION:
        return f"{head}.{OLD_ATTENTION[last]}.{param}"
    return key


def _count(shapes: dict[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def _prefix_summary(state_dict: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for key in state_dict:
        top = key.split(".", 1)[0]
        counts[top] = counts.get(top, 0) + 1
    common = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:6]
    return f"{len(state_dict)} tensors under " + ", ".join(f"{name}: {count}" for name, count in common)


def require_vae(vae: Any) -> Vae:
    if not isinstance(vae, Vae):
        raise InvalidInput("vae", f"expected a VAE, got {type(vae).__name__}")
    return vae


class VAELoader:
    DESCRIPTION = "Loads a VAE file from the vae folder (single-file LDM layout or diffusers' AutoencoderKL layout)."
    CATEGORY = "loaders"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"vae_name": (files_of(FOLDER),)}}

    @classmethod
    def IS_CHANGED(cls, vae_name: Any) -> str | float:
        return version_of(FOLDER, vae_name, "vae_name")

    def load_vae(self, vae_name: str) -> tuple[Vae]:
        ctx = context.current()
        path = path_of(FOLDER, vae_name, "vae_name")
        _, dtype = loading.dtypes(ctx)
        module = loading.manager_of(ctx).load(path, lambda state_dict: build_vae(state_dict, path), kind="vae",
                                              dtype=dtype)
        return (Vae(module, name=path.name),)


class VAEEncode:
    DESCRIPTION = "Encodes images into raw latents with the VAE (cropped to multiples of 8 pixels)."
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae: Any, pixels: Any) -> tuple[dict[str, Any]]:
        return ({"samples": require_vae(vae).encode(pixels, name="pixels")},)


class VAEDecode:
    DESCRIPTION = "Decodes latents into images with the VAE."
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                             "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."})}}

    def decode(self, vae: Any, samples: Any) -> tuple[Any]:
        latent = require_latent("samples", samples)["samples"]
        return (require_vae(vae).decode(latent, name="samples"),)


class VAEDecodeTiled:
    DESCRIPTION = "Decodes latents in overlapping tiles (less memory for large images; seams are blended)."
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",), "tile_size": TILE_SIZE, "overlap": OVERLAP,
                             "temporal_size": TEMPORAL_SIZE, "temporal_overlap": TEMPORAL_OVERLAP}}

    def decode(self, vae: Any, samples: Any, tile_size: int, overlap: int = 64, temporal_size: int = 64,
               temporal_overlap: int = 8) -> tuple[Any]:
        latent = require_latent("samples", samples)["samples"]
        return (require_vae(vae).decode_tiled(latent, int(tile_size), int(overlap), name="samples"),)


class VAEEncodeTiled:
    DESCRIPTION = "Encodes images in overlapping tiles (less memory for large images; seams are blended)."
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",),
                             "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64}),
                             "overlap": OVERLAP, "temporal_size": TEMPORAL_SIZE, "temporal_overlap": TEMPORAL_OVERLAP}}

    def encode(self, vae: Any, pixels: Any, tile_size: int, overlap: int, temporal_size: int = 64,
               temporal_overlap: int = 8) -> tuple[dict[str, Any]]:
        return ({"samples": require_vae(vae).encode_tiled(pixels, int(tile_size), int(overlap), name="pixels")},)


def masked_for_inpaint(vae: Vae, pixels: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's inpainting input: ``(pixels cropped to the VAE's multiple with the masked ones (mask > 0.5) set to
    grey 0.5, the mask resized to the pixels (bilinear) and cropped the same way [B, 1, h, w])``."""
    if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or pixels.shape[-1] < 3:
        raise InvalidInput("pixels", "expected an IMAGE [batch, height, width, 3]")
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise InvalidInput("mask", "expected a MASK [batch, height, width]")
    ratio = vae.downscale_ratio
    if pixels.shape[1] < ratio or pixels.shape[2] < ratio:
        raise InvalidInput("pixels", f"an image of {pixels.shape[2]}x{pixels.shape[1]} pixels is smaller than the "
                                     f"VAE's {ratio}x{ratio} latent cell")
    planes = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).to(device=pixels.device, dtype=torch.float32)
    if planes.shape[0] not in (1, pixels.shape[0]):
        raise InvalidInput("mask", f"a batch of {planes.shape[0]} masks does not match {pixels.shape[0]} images")
    planes = F.interpolate(planes, size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
    planes = crop_to_multiple(planes.movedim(1, -1), ratio).movedim(-1, 1)
    keep = (1.0 - planes.round()).movedim(1, -1)
    masked = (crop_to_multiple(pixels, ratio)[..., :3].float() - 0.5) * keep + 0.5
    return masked, planes


class VAEEncodeForInpaint:
    DESCRIPTION = ("Encodes images for inpainting: the masked pixels are set to grey before encoding and the mask, "
                   "grown by grow_mask_by pixels, becomes the latent's noise mask.")
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    def encode(self, vae: Any, pixels: Any, mask: Any, grow_mask_by: int = 6) -> tuple[dict[str, Any]]:
        vae = require_vae(vae)
        masked, planes = masked_for_inpaint(vae, pixels, mask)
        grow = int(grow_mask_by)
        grown = planes.round()
        if grow > 0:  # any masked pixel within the grow x grow window (ComfyUI's padding: the window leans back)
            padding = math.ceil((grow - 1) / 2)
            grown = F.max_pool2d(grown, grow, stride=1, padding=padding)[..., :planes.shape[-2], :planes.shape[-1]]
        return ({"samples": vae.encode(masked, name="pixels"), "noise_mask": grown},)


class InpaintModelConditioning:
    DESCRIPTION = ("Prepares inpainting: the image with its masked pixels set to grey, encoded, and the mask go to "
                   "both conditionings (for inpainting models); the latent is the encoded image, with the mask as "
                   "its noise mask when noise_mask is on.")
    CATEGORY = "conditioning/inpaint"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",),
                             "pixels": ("IMAGE",), "mask": ("MASK",),
                             "noise_mask": ("BOOLEAN", {"default": True, "tooltip": (
                                 "Add a noise mask to the latent so sampling will only happen within the mask. Might "
                                 "improve results or completely break things depending on the model.")})}}

    def encode(self, positive: Any, negative: Any, pixels: Any, vae: Any, mask: Any,
               noise_mask: bool = True) -> tuple[list[Any], list[Any], dict[str, Any]]:
        from .conditioning_nodes import with_values

        vae = require_vae(vae)
        masked, planes = masked_for_inpaint(vae, pixels, mask)
        concat_latent = vae.encode(masked, name="pixels")
        latent: dict[str, Any] = {"samples": vae.encode(pixels, name="pixels")}
        if noise_mask:
            latent["noise_mask"] = planes
        values = {"concat_latent_image": concat_latent, "concat_mask": planes}
        return (with_values("positive", positive, values), with_values("negative", negative, values), latent)


NODE_CLASS_MAPPINGS = {
    "VAELoader": VAELoader,
    "VAEEncode": VAEEncode,
    "VAEDecode": VAEDecode,
    "VAEEncodeTiled": VAEEncodeTiled,
    "VAEDecodeTiled": VAEDecodeTiled,
    "VAEEncodeForInpaint": VAEEncodeForInpaint,
    "InpaintModelConditioning": InpaintModelConditioning,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VAELoader": "Load VAE",
    "VAEEncode": "VAE Encode",
    "VAEDecode": "VAE Decode",
    "VAEEncodeTiled": "VAE Encode (Tiled)",
    "VAEDecodeTiled": "VAE Decode (Tiled)",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
    "InpaintModelConditioning": "InpaintModelConditioning",
}
