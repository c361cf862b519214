"""Conversion of a ComfyUI UI-format workflow (``{"nodes": [...], "links": [...]}``) to an API graph.

Widget values are matched to input names by ``object_info`` (comfyui_api.md §3.4): widgets follow
``input_order`` (required, then optional); an INT with ``control_after_generate`` (or named ``seed``/
``noise_seed``) is followed by its control value, a COMBO with ``control_after_generate`` by its control value
(and, in the classic frontend, a filter value: detected from the count), a COMBO with an upload option by the
upload button's value. A linked widget keeps its slot; the link's value wins. Notes, ``PrimitiveNode`` and
``Reroute`` nodes are not emitted; muted nodes (mode 2) are dropped and links to them removed; bypassed nodes
(mode 4) are dropped and their consumers rewired (see ``ui_links``). Titles are kept in ``_meta.title``.
Subgraph nodes are replaced by their inner nodes, ids ``"<outer id>:<inner id>"`` (see ``subgraphs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.flows import node_specs
from visionatrix.flows.graph import Graph, drop_dangling_links
from visionatrix.flows.importers import subgraphs
from visionatrix.flows.importers.ui_links import (
    MODE_BYPASS,
    MODE_MUTED,
    NOTE_TYPES,
    VIRTUAL_TYPES,
    LinkResolver,
)
from visionatrix.flows.node_specs import ObjectInfo

SEED_NAMES = ("seed", "noise_seed")


@dataclass
class Conversion:
    graph: Graph
    warnings: list[str] = field(default_factory=list)


def looks_like_ui_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def convert_ui_workflow(data: dict[str, Any], object_info: ObjectInfo) -> Conversion:
    def widget_value(node: dict[str, Any], name: str) -> Any:
        value = _widget_inputs(str(node["id"]), node, object_info.get(node["type"]), []).get(name, subgraphs.MISSING)
        return value["__value__"] if isinstance(value, dict) and set(value) == {"__value__"} else value

    flat = subgraphs.flatten(data, _index_nodes, widget_value)
    nodes = flat.nodes
    resolver = LinkResolver(nodes, flat.links)
    conversion = Conversion(graph={})
    for node_id, node in nodes.items():
        node_type = node["type"]
        if node_type in NOTE_TYPES or node_type in VIRTUAL_TYPES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        node_info = object_info.get(node_type)
        inputs = _widget_inputs(node_id, node, node_info, conversion.warnings)
        _link_inputs(node, inputs, resolver)
        title = node.get("title") or (node_info or {}).get("display_name") or node_type
        conversion.graph[node_id] = {"class_type": node_type, "inputs": inputs, "_meta": {"title": title}}
    drop_dangling_links(conversion.graph)
    return conversion


def _index_nodes(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """The nodes of one graph level (``where`` names it in errors) by id, each checked for shape."""
    if not isinstance(raw, list):
        raise InvalidFlow(f"{where}: 'nodes' must be a list, got {type(raw).__name__}")
    nodes: dict[str, dict[str, Any]] = {}
    for index, node in enumerate(raw):
        if not isinstance(node, dict) or "id" not in node:
            raise InvalidFlow(f"{where}: node #{index} is not an object with an 'id'")
        node_id = str(node["id"])
        node_type = node.get("type")
        if not isinstance(node_type, str) or not node_type:
            raise InvalidFlow(f"{where}: node {node_id} has no type")
        if node_type.startswith("workflow>"):
            raise InvalidFlow(
                f"{where}: node {node_id} is a legacy group node ({node_type}); convert it to a subgraph "
                "in the editor first"
            )
        if node_id in nodes:
            raise InvalidFlow(f"{where}: node id {node_id} is used twice")
        if not isinstance(node.get("inputs") or [], list):
            raise InvalidFlow(f"{where}: node {node_id} ({node_type}) has inputs that are not a list")
        nodes[node_id] = node
    return nodes


def _api_value(value: Any) -> Any:
    """Array widget values travel wrapped so they are never mistaken for links."""
    return {"__value__": value} if isinstance(value, list) else value


def _widget_inputs(node_id: str, node: dict[str, Any], node_info: Any, warnings: list[str]) -> dict[str, Any]:
    values = node.get("widgets_values")
    where = f"node {node_id} ({node['type']})"
    if node_info is None:
        if isinstance(values, dict):
            return {str(k): _api_value(v) for k, v in values.items()}
        if values:
            warnings.append(f"{where}: unknown node type, its widget values could not be mapped to inputs")
        return {}
    widgets = [
        (name, spec) for name, spec, _required in node_specs.ordered_inputs(node_info) if node_specs.is_widget(spec)
    ]
    if isinstance(values, dict):
        names = {name for name, _spec in widgets}
        return {str(k): _api_value(v) for k, v in values.items() if k in names}
    values = list(values or [])
    combo_control_width = _combo_control_width(widgets, len(values))
    inputs: dict[str, Any] = {}
    index = 0
    for name, spec in widgets:
        if index < len(values):
            inputs[name] = _api_value(values[index])
        elif "default" in node_specs.spec_options(spec):
            inputs[name] = _api_value(node_specs.spec_options(spec)["default"])
            warnings.append(f"{where}: no widget value for {name!r}, using its default")
        index += 1 + _extra_slots(name, spec, combo_control_width)
    if index < len(values):
        warnings.append(f"{where}: {len(values) - index} widget value(s) more than object_info describes were ignored")
    return inputs


def _extra_slots(name: str, spec: Any, combo_control_width: int) -> int:
    """How many hidden values follow this widget in ``widgets_values``."""
    kind = node_specs.spec_type(spec)
    options = node_specs.spec_options(spec)
    control = options.get("control_after_generate")
    if kind == "INT":
        return 1 if control is not False and (bool(control) or name in SEED_NAMES) else 0
    if kind == "COMBO":
        extra = combo_control_width if control else 0
        return extra + (1 if any(options.get(key) for key in node_specs.UPLOAD_OPTIONS) else 0)
    return 0


def _combo_control_width(widgets: list[tuple[str, Any]], count: int) -> int:
    """2 when the values only add up with a filter value after each combo control (classic frontend), else 1."""
    one = sum(1 + _extra_slots(name, spec, 1) for name, spec in widgets)
    two = sum(1 + _extra_slots(name, spec, 2) for name, spec in widgets)
    return 2 if count == two and one != two else 1


def _link_inputs(node: dict[str, Any], inputs: dict[str, Any], resolver: LinkResolver) -> None:
    for index, slot in enumerate(node.get("inputs") or []):
        if not isinstance(slot, dict):
            raise InvalidFlow(f"workflow: node {node['id']} input #{index} is not an object")
        if slot.get("link") is None:
            continue
        widget = slot.get("widget")
        name = widget.get("name") if isinstance(widget, dict) and widget.get("name") else slot.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidFlow(f"workflow: node {node['id']} input #{index} has no name")
        resolved = resolver.resolve(slot["link"])
        if resolved is None:
            continue
        if resolved.muted:
            inputs.pop(name, None)
        elif resolved.link is not None:
            inputs[name] = resolved.link
        else:
            inputs[name] = _api_value(resolved.value)
