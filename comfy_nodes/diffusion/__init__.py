"""Diffusion nodes (SD1.x, SD2.x, SDXL; SD3/SD3.5, Flux.1):
ComfyUI's loaders, conditioning, latents, sampling, LoRA and ControlNet.

Each module exports ``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS``; this pack merges them.
"""

from . import (
    conditioning_nodes,
    controlnet_nodes,
    custom_sampling,
    dit_loaders,
    flow_nodes,
    freeu_node,
    latent_nodes,
    loaders,
    lora_nodes,
    model_nodes,
    remote_vae,
    sampling_nodes,
    text_nodes,
    vae_nodes,
)

MODULES = (loaders, lora_nodes, text_nodes, conditioning_nodes, controlnet_nodes, latent_nodes, vae_nodes,
           sampling_nodes, custom_sampling, model_nodes, freeu_node, dit_loaders, flow_nodes, remote_vae)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
