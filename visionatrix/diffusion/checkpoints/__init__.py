"""Single-file Stable Diffusion checkpoints: family detection from key shapes, conversion to diffusers modules."""
