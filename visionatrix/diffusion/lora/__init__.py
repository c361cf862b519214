"""LoRA (and LoCon, LoHa, LoKr, DoRA, full diffs) files as weight patches for a model's UNet (or Flux / SD3
transformer) and text encoders (CLIP-L, CLIP-G, OpenCLIP, T5-XXL).

:func:`lora_patches` matches a file's tensors to the networks (every key format in :mod:`.keymap` and
:mod:`.dit_keys`) and returns per-target :class:`LoraPatch` lists that :func:`visionatrix.diffusion.patches.applied`
adds for one use and undoes.
"""

from visionatrix.diffusion.lora.match import LoraFile, LoraMatch, group_modules, lora_patches
from visionatrix.diffusion.lora.patches import LoraPatch

__all__ = ["LoraFile", "LoraMatch", "LoraPatch", "group_modules", "lora_patches"]
