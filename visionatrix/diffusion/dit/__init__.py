"""Diffusion transformers (DiT families): loading their files as diffusers modules."""
