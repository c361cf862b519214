"""Which flows a worker can run: node types registered and model files present in the model folders (models_dir
and the extra model paths)."""

from __future__ import annotations

from pathlib import Path

from tests.corpus import VIXFLOWS
from visionatrix.flows.installed import find_model, missing_models, needed_files, runnable_flows, why_not_runnable
from visionatrix.flows.store import FlowStore
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]


def _registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


def test_bundled_flows_are_runnable_once_the_model_files_they_load_are_in_place(tmp_path: Path) -> None:
    registry = _registry()
    store = FlowStore([ROOT / "flows"], registry.object_info())
    infos = [flow.info() for flow in store.flows()]
    folders = ModelFolders(tmp_path / "models")
    without_models = [info["name"] for info in infos if not info["models"]]
    assert runnable_flows(infos, set(registry.object_info()), folders) == without_models
    for info in infos:
        for model in info["models"]:
            path = folders.install_path((model.get("types") or [""])[0], model["value"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    assert runnable_flows(infos, set(registry.object_info()), folders) == [i["name"] for i in infos]


def test_corpus_flows_need_their_nodes_and_models(tmp_path: Path) -> None:
    registry = _registry()
    store = FlowStore([VIXFLOWS], registry.object_info())
    infos = [flow.info() for flow in store.flows()]
    with_models = [info for info in infos if info["models"]]
    assert with_models, "the corpus has flows that load models"
    names = runnable_flows(infos, set(registry.object_info()), ModelFolders(tmp_path))
    assert not set(names) & {info["name"] for info in with_models}
    problems = why_not_runnable(with_models[0], set(registry.object_info()), ModelFolders(tmp_path))
    assert any(problem.startswith("model ") for problem in problems)


def test_a_model_without_types_counts_in_any_folder_or_the_root(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.pth").write_bytes(b"x")
    (tmp_path / "c.bin").write_bytes(b"x")
    models = [{"value": "a.safetensors", "types": ["checkpoints"]}, {"value": "b.pth", "types": []},
              {"value": "c.bin"}, {"value": "d.ckpt", "types": ["checkpoints"]}, {"value": "../c.bin"},
              {"value": "/etc/passwd"}]
    assert missing_models(models, ModelFolders(tmp_path)) == ["d.ckpt", "../c.bin", "/etc/passwd"]
    assert missing_models([{"value": "x"}], ModelFolders(tmp_path / "absent")) == ["x"]


def test_a_catalog_model_counts_only_in_its_folders_by_value_or_catalog_filename(tmp_path: Path) -> None:
    models_dir, extra = tmp_path / "models", tmp_path / "collection" / "unet"
    (models_dir / "loras").mkdir(parents=True)
    (models_dir / "loras" / "flux.safetensors").write_bytes(b"x")
    extra.mkdir(parents=True)
    (extra / "renamed-by-catalog.safetensors").write_bytes(b"x")
    folders = ModelFolders(models_dir, {"unet": [extra]})
    by_filename = {"value": "flux.safetensors", "filename": "renamed-by-catalog.safetensors",
                   "types": ["diffusion_models", "unet"], "in_catalog": True}
    wrong_folder = {"value": "flux.safetensors", "types": ["diffusion_models"], "in_catalog": True}
    assert find_model(by_filename, folders) == extra / "renamed-by-catalog.safetensors"
    assert missing_models([by_filename, wrong_folder], folders) == ["flux.safetensors"]
    assert needed_files([{"models": [by_filename, wrong_folder]}], folders) == [
        extra / "renamed-by-catalog.safetensors"]


def test_unknown_node_types_are_named() -> None:
    flow = {"name": "f", "node_types": ["LoadImage", "NoSuchNode"], "models": []}
    assert why_not_runnable(flow, {"LoadImage"}, ModelFolders(Path("/nonexistent"))) == ["node type NoSuchNode"]
