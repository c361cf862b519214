"""Image and mask operations as ComfyUI V1 nodes: resizing, transforms, colour, filters, compositing, masks, text.

Each module owns its nodes and exports its own mappings; this package merges them for the node loader.
"""

from . import batch, color, compose, filters, masks, resize, text, transform

_MODULES = (resize, transform, color, filters, compose, batch, masks, text)

NODE_CLASS_MAPPINGS = {name: node for module in _MODULES for name, node in module.NODE_CLASS_MAPPINGS.items()}

NODE_DISPLAY_NAME_MAPPINGS = {
    name: title for module in _MODULES for name, title in module.NODE_DISPLAY_NAME_MAPPINGS.items()
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
