"""Flows: ComfyUI graphs with a typed manifest (parameters bound to node inputs, outputs, models).

``load_flow`` imports a flow from any accepted format, ``bind_params`` writes a run's parameters into a copy of
its graph, ``FlowStore`` finds flows by name in folders, ``FlowCatalog`` adds uploaded flows to bundled ones.
See ``docs/flows.md``.
"""

from visionatrix.flows.catalog import FlowCatalog
from visionatrix.flows.flow import Flow
from visionatrix.flows.importers import CompiledCatalog, detect_format, load_flow
from visionatrix.flows.manifest import Binding, FlowInput, FlowManifest, FlowOutput, ModelRef
from visionatrix.flows.params import bind_params
from visionatrix.flows.store import FlowStore

__all__ = [
    "Binding",
    "CompiledCatalog",
    "Flow",
    "FlowCatalog",
    "FlowInput",
    "FlowManifest",
    "FlowOutput",
    "FlowStore",
    "ModelRef",
    "bind_params",
    "detect_format",
    "load_flow",
]
