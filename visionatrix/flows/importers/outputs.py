"""Output nodes of a graph and the kind of result each produces (visionatrix.md §4.4)."""

from __future__ import annotations

from visionatrix.flows import node_specs
from visionatrix.flows.graph import Graph, title_of
from visionatrix.flows.manifest import FlowOutput
from visionatrix.flows.node_specs import ObjectInfo

KNOWN_OUTPUTS: dict[str, str] = {
    "SaveImage": "image",
    "SaveAnimatedWEBP": "image_animated",
    "VHS_VideoCombine": "video",
    "SaveWEBM": "video",
    "SaveAudio": "audio",
    "SaveText|pysssss": "text",
    "SaveGLB": "3d_model",
    "PreviewImage": "preview",
}
_SOCKET_KINDS = {"IMAGE": "image", "AUDIO": "audio", "VIDEO": "video", "STRING": "text", "MESH": "3d_model"}


def derive_outputs(graph: Graph, object_info: ObjectInfo) -> list[FlowOutput]:
    """Nodes of a known saving class or flagged ``output_node`` in ``object_info``, in graph order."""
    outputs = []
    for node_id, node in graph.items():
        class_type = node["class_type"]
        if class_type in KNOWN_OUTPUTS:
            kind = KNOWN_OUTPUTS[class_type]
        elif node_specs.is_output_node(object_info, class_type):
            kind = _kind_from_inputs(object_info, class_type)
        else:
            continue
        outputs.append(FlowOutput(node_id=node_id, class_type=class_type, type=kind, title=title_of(node)))
    return outputs


def _kind_from_inputs(object_info: ObjectInfo, class_type: str) -> str:
    """The kind of the first socket input the output node consumes (``other`` when none is recognised)."""
    for _name, spec, _required in node_specs.ordered_inputs(object_info.get(class_type) or {}):
        kind = _SOCKET_KINDS.get(node_specs.spec_type(spec))
        if kind and not node_specs.is_widget(spec):
            return kind
    return "other"
