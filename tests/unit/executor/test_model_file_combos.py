"""A COMBO of model files (a ``ModelFileList``) is checked where the graph runs: a worker refuses a file its
folders lack, the server (``check_model_files=False``) accepts any name for its workers, but never a non-string."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from visionatrix.executor.validation import validate
from visionatrix.models.folders import ModelFileList, ModelFolders
from visionatrix.nodes import context
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.registry import NodeRegistry


class PickModel:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        folders = context.current().model_folders
        files = folders.list_files("loras") if folders is not None else ModelFileList(folder="loras")
        return {"required": {"lora_name": (files,)}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    def run(self, lora_name: str) -> dict[str, Any]:
        return {}


@pytest.fixture
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.register("PickModel", PickModel)
    return registry


@pytest.fixture
def folders(tmp_path: Path) -> ModelFolders:
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "here.safetensors").write_bytes(b"x")
    return ModelFolders(tmp_path)


def _errors(registry: NodeRegistry, value: Any, ctx: NodeContext) -> list[str]:
    with use(ctx):
        checked = validate({"1": {"class_type": "PickModel", "inputs": {"lora_name": value}}}, registry)
    return [err["details"] for entry in checked.node_errors.values() for err in entry["errors"]]


def test_where_the_graph_runs_a_model_file_must_be_in_its_folders(registry: NodeRegistry,
                                                                   folders: ModelFolders) -> None:
    ctx = NodeContext(model_folders=folders)
    assert _errors(registry, "here.safetensors", ctx) == []
    (problem,) = _errors(registry, "elsewhere.safetensors", ctx)
    assert "'elsewhere.safetensors' not in ['here.safetensors']" in problem


def test_the_server_accepts_any_model_file_name_but_not_other_values(registry: NodeRegistry) -> None:
    ctx = NodeContext(model_folders=None, check_model_files=False)
    assert _errors(registry, "on-some-worker.safetensors", ctx) == []
    (problem,) = _errors(registry, 12, ctx)
    assert "expected a model file name" in problem
    assert _errors(registry, "", ctx) != []


def test_a_listing_knows_its_folder(folders: ModelFolders) -> None:
    listed = folders.list_files("loras")
    assert listed == ["here.safetensors"] and listed.folder == "loras"
