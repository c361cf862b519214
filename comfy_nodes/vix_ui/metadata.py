"""VixUiWorkflowMetadata: the flow's name, version and capabilities, read by Visionatrix when it parses a flow."""

from __future__ import annotations

import json
from typing import Any

from . import fields


class VixUiWorkflowMetadata:
    DESCRIPTION = (
        "Describes the flow (id, title, author, licence, tags, version, requirements and capabilities). "
        "Visionatrix reads its inputs when it loads the flow; running it outputs the metadata as JSON text."
    )
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "name": ("STRING", {}),
                "display_name": ("STRING", {}),
                "description": ("STRING", {"default": ""}),
                "author": ("STRING", {}),
                "homepage": ("STRING", {"default": ""}),
                "documentation": ("STRING", {"default": ""}),
                "license": ("STRING", {"default": ""}),
                "tags": ("STRING", {"default": '["general"]', "multiline": True}),
                "version": ("STRING", {"default": "1.0.0"}),
            },
            "optional": {
                "requires": ("STRING", {"default": "[]", "multiline": True}),
                "is_seed_supported": ("BOOLEAN", {"default": True}),
                "is_count_supported": ("BOOLEAN", {"default": True}),
                "is_translations_supported": ("BOOLEAN", {"default": False}),
                "is_macos_supported": ("BOOLEAN", {"default": True}),
                "required_memory_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "step": 0.1, "round": False}),
                "hidden": ("BOOLEAN", {"default": False}),
                "remote_vae": ("BOOLEAN", {"default": False}),
                "long_description": ("STRING", {"default": "", "multiline": True}),
            },
        }

    def run(self, **metadata: Any) -> tuple[str]:
        return (json.dumps(metadata, sort_keys=True),)
