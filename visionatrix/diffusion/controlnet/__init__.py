"""ControlNets (SD1/SD2/SDXL) on diffusers' ``ControlNetModel``: detection and configs from shapes
(:mod:`.detect`), conversion (:mod:`.convert`), loading through the model manager (:mod:`.loading`) and the
CONTROL_NET value with its application on a conditioning (:mod:`.control`)."""

from visionatrix.diffusion.controlnet.control import AppliedControl, ControlNet, prepare_hint
from visionatrix.diffusion.controlnet.convert import build_controlnet
from visionatrix.diffusion.controlnet.loading import load_controlnet

__all__ = ["AppliedControl", "ControlNet", "build_controlnet", "load_controlnet", "prepare_hint"]
