"""UpscaleModelLoader: an upscale model file of the ``upscale_models`` folder as an UPSCALE_MODEL.

The file is found through the worker's model folders and loaded through its model manager (once; later tasks get
the kept model). spandrel detects the architecture from the weights (every architecture of its MIT registry); the
output is spandrel's ``ImageModelDescriptor``, what ComfyUI nodes receive as an UPSCALE_MODEL. spandrel is imported
only when a model is loaded (its import takes seconds).
"""

from __future__ import annotations

from typing import Any

from visionatrix.errors import ModelError
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of, path_of, version_of

FOLDER = "upscale_models"
KIND = "upscale"


def model_path(model_name: Any) -> Any:
    """The file of ``model_name`` in the upscale models folder; :class:`InvalidInput` naming both when missing."""
    return path_of(FOLDER, model_name, "model_name")


def build_descriptor(state_dict: dict[str, Any]) -> Any:
    """spandrel's descriptor for ``state_dict``; only image-to-image models (not inpainting ones) are accepted."""
    import spandrel

    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        first = ", ".join(list(state_dict)[:3])
        raise ValueError(f"spandrel recognises no architecture in its weights (keys {first}, ...)") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError(f"a {descriptor.architecture.name} model takes an image and a mask (inpainting), not an "
                         "image to upscale")
    return descriptor


class UpscaleModelLoader:
    DESCRIPTION = "Loads an upscale model (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...) from the upscale_models folder."
    CATEGORY = "loaders"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    RETURN_NAMES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model_name": (files_of(FOLDER),)}}

    @classmethod
    def IS_CHANGED(cls, model_name: Any) -> str | float:
        """The file's size and modification time, so a replaced file is loaded again."""
        return version_of(FOLDER, model_name, "model_name")

    def load_model(self, model_name: str) -> tuple[Any]:
        models = context.current().models
        if models is None:
            raise ModelError("no model manager in this node context: UpscaleModelLoader runs inside an executor")
        return (models.load(model_path(model_name), build_descriptor, kind=KIND),)
