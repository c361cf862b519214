"""A corpus flow's model inputs point at the files the catalog installs, where the graph's own name is absent."""

from __future__ import annotations

import json

from tests.corpus import VIXFLOWS
from visionatrix.config import Settings
from visionatrix.models.catalog import load_catalog_sync
from visionatrix.models.folders import ModelFolders
from visionatrix.models.graph_names import installed_names

GRAPH_NAME, CATALOG_NAME = "animagineXL40_v4Opt.safetensors", "animagine-xl-4.0-opt.safetensors"


def _graph() -> dict:
    return json.loads((VIXFLOWS / "animagine_xl.json").read_text())


def _checkpoint_node(graph: dict) -> str:
    return next(node_id for node_id, node in graph.items()
                if isinstance(node, dict) and node.get("class_type") == "CheckpointLoaderSimple")


def test_an_installed_catalog_file_replaces_the_graphs_name(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / CATALOG_NAME).write_bytes(b"x")
    graph = _graph()
    node = _checkpoint_node(graph)
    assert graph[node]["inputs"]["ckpt_name"] == GRAPH_NAME
    resolved, changes = installed_names(graph, load_catalog_sync(Settings().models_catalog), ModelFolders(tmp_path))
    assert resolved[node]["inputs"]["ckpt_name"] == CATALOG_NAME
    assert changes == [(node, "ckpt_name", GRAPH_NAME, CATALOG_NAME)]
    assert graph[node]["inputs"]["ckpt_name"] == GRAPH_NAME  # the input graph is not changed


def test_a_file_under_the_graphs_own_name_or_no_file_leaves_the_graph_as_it_is(tmp_path):
    graph = _graph()
    node = _checkpoint_node(graph)
    catalog = load_catalog_sync(Settings().models_catalog)
    assert installed_names(graph, catalog, ModelFolders(tmp_path)) == (graph, [])
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / GRAPH_NAME).write_bytes(b"x")
    (tmp_path / "checkpoints" / CATALOG_NAME).write_bytes(b"x")
    resolved, changes = installed_names(graph, catalog, ModelFolders(tmp_path))
    assert changes == [] and resolved[node]["inputs"]["ckpt_name"] == GRAPH_NAME
