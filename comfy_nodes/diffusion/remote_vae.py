"""RemoteVAEDecode (Visionatrix's node): decodes a latent with the VAE of a model family, named by ``vae_type``.

The node has no VAE input: the flows use it to decode without loading the VAE themselves. This release decodes
locally with the family's VAE file from the vae folder (the catalog's file for that family, loaded once through the
model manager like VAELoader's); remote decoding endpoints are not used.
"""

from __future__ import annotations

from typing import Any

from comfy_nodes.diffusion.vae_nodes import FOLDER, VAELoader
from visionatrix.errors import InvalidInput
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of

VAE_FILES = {
    "SD v1": ("vae-ft-mse-840000-ema-pruned.safetensors", "vae-ft-mse-840000-ema-pruned.ckpt"),
    "SDXL": ("sdxl_vae.safetensors",),
    "Flux": ("ae.safetensors", "flux_vae.safetensors"),
    "HunyuanVideo": ("hunyuan_video_vae_bf16.safetensors",),
}
"""Each type's VAE files as the catalog installs them, the first found is used."""


class RemoteVAEDecode:
    DESCRIPTION = ("Decodes latents with the VAE of the chosen model family (its file in the vae folder, e.g. "
                   "ae.safetensors for Flux).")
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "vae_type": (list(VAE_FILES), {"default": "Flux"})}}

    def decode(self, samples: Any, vae_type: str) -> tuple[Any]:
        if vae_type not in VAE_FILES:
            raise InvalidInput("vae_type", f"unknown VAE type {vae_type!r}; expected one of {', '.join(VAE_FILES)}")
        folders = context.current().model_folders
        installed = set(files_of(FOLDER)) if folders is not None else set()
        name = next((file for file in VAE_FILES[vae_type] if file in installed), None)
        if name is None:
            raise InvalidInput("vae_type", f"no {vae_type} VAE is installed: put {VAE_FILES[vae_type][0]} in the "
                                           f"{FOLDER} folder (or install it from the models catalog)")
        (vae,) = VAELoader().load_vae(name)
        from comfy_nodes.diffusion.vae_nodes import VAEDecode

        return VAEDecode().decode(vae, samples)


NODE_CLASS_MAPPINGS = {"RemoteVAEDecode": RemoteVAEDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"RemoteVAEDecode": "VAE Decode (Remote)"}
