"""Finding flows by name in folders of JSON files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.unit.flows.helpers import VIXFLOWS, metadata_node, node
from visionatrix.errors import InvalidFlow, NotFound
from visionatrix.flows import FlowStore


def _write(folder: Path, file_name: str, flow_name: str, version: str = "1.0.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    graph = {"1": metadata_node(name=flow_name, version=version), "2": node("SaveImage", {"images": "x"})}
    path.write_text(json.dumps(graph))
    return path


def test_flows_are_listed_and_loaded_by_manifest_name(tmp_path: Path) -> None:
    _write(tmp_path, "first.json", "alpha")
    _write(tmp_path, "second.json", "beta")
    store = FlowStore([tmp_path], {})
    assert store.names() == ["alpha", "beta"]
    assert store.get("alpha").source == tmp_path / "first.json"
    assert [flow.name for flow in store.flows()] == ["alpha", "beta"]


def test_the_published_corpus_is_served_by_name(pack_object_info: dict) -> None:
    store = FlowStore([VIXFLOWS], pack_object_info)
    assert len(store.names()) == 52
    assert store.get("supir_upscaler").manifest.display_name == "SUPIR Upscaler"
    assert store.problems == {}


def test_unknown_name_is_not_found(tmp_path: Path) -> None:
    _write(tmp_path, "a.json", "alpha")
    with pytest.raises(NotFound, match="flow 'gamma' not found"):
        FlowStore([tmp_path], {}).get("gamma")


@pytest.mark.parametrize("name", ["../alpha", "sub/alpha", "..", "/etc/passwd", "Alpha", "a\\b", ""])
def test_names_that_are_paths_or_not_ids_are_refused(tmp_path: Path, name: str) -> None:
    _write(tmp_path, "a.json", "alpha")
    with pytest.raises(InvalidFlow, match="is not a flow name"):
        FlowStore([tmp_path], {}).get(name)


def test_first_folder_wins_and_the_duplicate_is_reported(tmp_path: Path) -> None:
    first = _write(tmp_path / "one", "x.json", "alpha", version="1.0.0")
    second = _write(tmp_path / "two", "y.json", "alpha", version="9.0.0")
    store = FlowStore([tmp_path / "one", tmp_path / "two"], {})
    assert store.get("alpha").source == first
    assert store.problems == {str(second): f"flow 'alpha' is already defined by {first}"}


def test_broken_files_and_missing_folders_are_reported_not_fatal(tmp_path: Path) -> None:
    _write(tmp_path, "good.json", "alpha")
    (tmp_path / "bad.json").write_text("{nope")
    store = FlowStore([tmp_path, tmp_path / "absent"], {})
    assert store.names() == ["alpha"]
    assert store.problems[str(tmp_path / "absent")] == "not a folder"
    assert store.problems[str(tmp_path / "bad.json")].startswith(f"{tmp_path / 'bad.json'}: not valid JSON")


def test_refresh_picks_up_new_files(tmp_path: Path) -> None:
    _write(tmp_path, "a.json", "alpha")
    store = FlowStore([tmp_path], {})
    assert store.names() == ["alpha"]
    _write(tmp_path, "b.json", "beta")
    store.refresh()
    assert store.names() == ["alpha", "beta"]


def test_open_takes_a_file_path_or_a_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "lib", "a.json", "alpha")
    outside = tmp_path / "elsewhere.json"
    shutil.copy(VIXFLOWS / "sdxl_lighting.json", outside)
    store = FlowStore([tmp_path / "lib"], {})
    assert store.open("alpha").source == path
    assert store.open(str(outside)).name == "sdxl_lighting"
    assert store.open(outside).name == "sdxl_lighting"
    with pytest.raises(InvalidFlow, match="flow file not found"):
        store.open(str(tmp_path / "missing.json"))
