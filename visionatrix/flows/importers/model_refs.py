"""Model files a graph loads, matched against the models catalog (visionatrix.md §5).

A model input is a loader-node input with a known name (``ckpt_name``, ``unet_name``, ``clip_name1``, ...) or any
string input whose value ends in a model-file extension. When a catalog is given, inputs of classes that a catalog
regex names by ``class_name`` (presets like ``IPAdapterUnifiedLoader``'s) are tried too. A catalog entry matches
when one of its regex objects matches all its keys: ``class_name`` against the class, ``input_name`` against the
input, ``input_value`` against the value (``re.match``); the first entry in catalog order wins.

An entry may name others in ``requires`` (a T5 text encoder needs T5's tokenizer, which no graph input names): each
is listed once, right after the first model that needs it, as an *implied* reference (``implied_by`` set,
``node_id`` and ``input`` empty, ``value`` the catalog's file name), never as a graph input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from visionatrix.errors import InvalidFlow, ModelError
from visionatrix.flows.graph import Graph
from visionatrix.flows.manifest import ModelRef

MODEL_INPUT_NAMES = frozenset(
    {
        "ckpt_name",
        "unet_name",
        "vae_name",
        "clip_name",
        "clip_name1",
        "clip_name2",
        "clip_name3",
        "clip_name4",
        "lora_name",
        "model_name",
        "control_net_name",
        "style_model_name",
        "photomaker_model_name",
        "instantid_file",
        "pulid_file",
        "adapter_file",
        "supir_model",
        "gligen_name",
        "hypernetwork_name",
    }
)
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx", ".gguf", ".sft", ".zip")
NOT_A_MODEL = frozenset({"", "none", "baked vae"})

Catalog = Mapping[str, Mapping[str, Any]]


class CompiledCatalog:
    """A models catalog with its regexes compiled once; bad regexes raise :class:`InvalidFlow` on load."""

    def __init__(self, catalog: Catalog) -> None:
        self.entries: list[tuple[str, Mapping[str, Any], list[dict[str, re.Pattern[str]]]]] = []
        self.class_patterns: list[re.Pattern[str]] = []
        self.by_name: dict[str, Mapping[str, Any]] = {str(name): entry for name, entry in catalog.items()}
        for name, entry in catalog.items():
            compiled = []
            for rule in entry.get("regexes") or []:
                try:
                    compiled.append({key: re.compile(pattern) for key, pattern in rule.items()})
                except re.error as exc:
                    raise InvalidFlow(f"models catalog entry {name!r}: bad regex: {exc}") from exc
                if "class_name" in compiled[-1]:
                    self.class_patterns.append(compiled[-1]["class_name"])
            self.entries.append((name, entry, compiled))
            for needed in entry.get("requires") or ():
                if needed not in self.by_name:
                    raise ModelError(f"models catalog entry {name!r}: requires {needed!r}, but the catalog has no "
                                     f"entry of that name")

    def required(self, name: str) -> list[tuple[str, str]]:
        """``(entry, required by)`` for every entry ``name`` requires, directly or through others, each once, depth
        first (cycles are harmless)."""
        found: list[tuple[str, str]] = []
        seen = {name}

        def visit(current: str) -> None:
            for needed in (self.by_name.get(current) or {}).get("requires") or ():
                if needed not in seen:
                    seen.add(needed)
                    found.append((needed, current))
                    visit(needed)

        visit(name)
        return found

    def names_class(self, class_type: str) -> bool:
        return any(pattern.match(class_type) for pattern in self.class_patterns)

    def match(self, class_type: str, input_name: str, value: str) -> tuple[str, Mapping[str, Any]] | None:
        subject = {"class_name": class_type, "input_name": input_name, "input_value": value}
        for name, entry, rules in self.entries:
            for rule in rules:
                if rule and all(key in subject and pattern.match(subject[key]) for key, pattern in rule.items()):
                    return name, entry
        return None


def is_model_input(input_name: str, value: Any) -> bool:
    if not isinstance(value, str) or value.strip().lower() in NOT_A_MODEL:
        return False
    return input_name in MODEL_INPUT_NAMES or value.lower().endswith(MODEL_EXTENSIONS)


def derive_models(graph: Graph, catalog: CompiledCatalog | None, *, implied: bool = True) -> list[ModelRef]:
    """Every model input of the graph, in graph order, with its catalog entry when one matches, and (``implied``)
    the entries those require (:func:`with_implied`)."""
    refs: list[ModelRef] = []
    for node_id, node in graph.items():
        class_type = node["class_type"]
        class_named = catalog is not None and catalog.names_class(class_type)
        for input_name, value in node.get("inputs", {}).items():
            certain = is_model_input(input_name, value)
            if not certain and not (class_named and isinstance(value, str) and value):
                continue
            found = catalog.match(class_type, input_name, value) if catalog is not None else None
            if found is None:
                if certain:
                    refs.append(ModelRef(name=value, node_id=node_id, input=input_name, value=value))
                continue
            refs.append(_catalog_ref(node_id, input_name, value, *found))
    return with_implied(refs, catalog) if implied and catalog is not None else refs


def with_implied(refs: list[ModelRef], catalog: CompiledCatalog) -> list[ModelRef]:
    """``refs`` with each entry a catalog model among them requires, once, right after the first that needs it;
    an entry the graph loads itself is not added again."""
    listed = {ref.name for ref in refs if ref.in_catalog}
    result: list[ModelRef] = []
    for ref in refs:
        result.append(ref)
        if not ref.in_catalog or ref.implied_by:
            continue
        for needed, needed_by in catalog.required(ref.name):
            if needed not in listed:
                listed.add(needed)
                result.append(_implied_ref(needed, needed_by, catalog.by_name[needed]))
    return result


def _implied_ref(name: str, implied_by: str, entry: Mapping[str, Any]) -> ModelRef:
    url = str(entry.get("url") or "")
    filename = entry.get("filename") or unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or name
    return _catalog_ref("", "", str(filename), name, entry, implied_by=implied_by)


def _catalog_ref(node_id: str, input_name: str, value: str, name: str, entry: Mapping[str, Any], *,
                 implied_by: str | None = None) -> ModelRef:
    return ModelRef(
        name=name,
        node_id=node_id,
        input=input_name,
        value=value,
        implied_by=implied_by,
        in_catalog=True,
        url=entry.get("url"),
        homepage=entry.get("homepage"),
        hash=entry.get("hash"),
        types=list(entry.get("types") or []),
        filename=entry.get("filename"),
        file_size=entry.get("file_size"),
        gated=bool(entry.get("gated", False)),
    )
