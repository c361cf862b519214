"""Visionatrix's flow-authoring nodes (ComfyUI-Visionatrix compatible): form inputs, branch switches, metadata.

Class names, input names, types and defaults match the published ComfyUI-Visionatrix pack so the published
flows load and validate unchanged.
"""

from .aspect_ratio import VixUiAspectRatioSelector
from .dictionary import VixDictionaryGet, VixDictionaryNew
from .lists import VixUiList, VixUiListLogic
from .logic import VixCheckboxLogic, VixUiCheckboxLogic
from .lora_definition import VixDynamicLoraDefinition
from .metadata import VixUiWorkflowMetadata
from .values import VixUiCheckbox, VixUiPrompt, VixUiRangeFloat, VixUiRangeInt, VixUiRangeScaleFloat

NODE_CLASS_MAPPINGS = {
    "VixUiWorkflowMetadata": VixUiWorkflowMetadata,
    "VixUiPrompt": VixUiPrompt,
    "VixUiRangeInt": VixUiRangeInt,
    "VixUiRangeFloat": VixUiRangeFloat,
    "VixUiRangeScaleFloat": VixUiRangeScaleFloat,
    "VixUiCheckbox": VixUiCheckbox,
    "VixUiCheckboxLogic": VixUiCheckboxLogic,
    "VixCheckboxLogic": VixCheckboxLogic,
    "VixUiList": VixUiList,
    "VixUiListLogic": VixUiListLogic,
    "VixUiAspectRatioSelector": VixUiAspectRatioSelector,
    "VixDictionaryNew": VixDictionaryNew,
    "VixDictionaryGet": VixDictionaryGet,
    "VixDynamicLoraDefinition": VixDynamicLoraDefinition,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VixUiWorkflowMetadata": "VixUI-WorkflowMetadata",
    "VixUiPrompt": "VixUI-Prompt",
    "VixUiRangeInt": "VixUI-RangeInt",
    "VixUiRangeFloat": "VixUI-RangeFloat",
    "VixUiRangeScaleFloat": "VixUI-RangeScaleFloat",
    "VixUiCheckbox": "VixUI-Checkbox",
    "VixUiCheckboxLogic": "VixUI-CheckboxLogic",
    "VixCheckboxLogic": "Vix-CheckboxLogic",
    "VixUiList": "VixUI-List",
    "VixUiListLogic": "VixUI-ListLogic",
    "VixUiAspectRatioSelector": "VixUI-AspectRatioSelector",
    "VixDictionaryNew": "Vix-DictionaryNew",
    "VixDictionaryGet": "Vix-DictionaryGet",
    "VixDynamicLoraDefinition": "Vix-DynamicLoraDefinition",
}
