"""Which flows a worker can run: node types registered and model files present."""

from __future__ import annotations

from pathlib import Path

from tests.corpus import VIXFLOWS
from visionatrix.flows.installed import missing_models, runnable_flows, why_not_runnable
from visionatrix.flows.store import FlowStore
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]


def _registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


def test_bundled_flows_are_runnable_without_models(tmp_path: Path) -> None:
    registry = _registry()
    store = FlowStore([ROOT / "flows"], registry.object_info())
    infos = [flow.info() for flow in store.flows()]
    assert runnable_flows(infos, set(registry.object_info()), tmp_path / "models") == [i["name"] for i in infos]


def test_corpus_flows_need_their_nodes_and_models(tmp_path: Path) -> None:
    registry = _registry()
    store = FlowStore([VIXFLOWS], registry.object_info())
    infos = [flow.info() for flow in store.flows()]
    with_models = [info for info in infos if info["models"]]
    assert with_models, "the corpus has flows that load models"
    names = runnable_flows(infos, set(registry.object_info()), tmp_path)
    assert not set(names) & {info["name"] for info in with_models}
    problems = why_not_runnable(with_models[0], set(registry.object_info()), tmp_path)
    assert any(problem.startswith("model ") for problem in problems)


def test_a_model_counts_in_its_type_folder_any_subfolder_or_the_root(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.pth").write_bytes(b"x")
    (tmp_path / "c.bin").write_bytes(b"x")
    models = [{"value": "a.safetensors", "types": ["checkpoints"]}, {"value": "b.pth", "types": []},
              {"value": "c.bin"}, {"value": "d.ckpt", "types": ["checkpoints"]}, {"value": "../c.bin"},
              {"value": "/etc/passwd"}]
    assert missing_models(models, tmp_path) == ["d.ckpt", "../c.bin", "/etc/passwd"]
    assert missing_models([{"value": "x"}], tmp_path / "absent") == ["x"]


def test_unknown_node_types_are_named() -> None:
    flow = {"name": "f", "node_types": ["LoadImage", "NoSuchNode"], "models": []}
    assert why_not_runnable(flow, {"LoadImage"}, Path("/nonexistent")) == ["node type NoSuchNode"]
