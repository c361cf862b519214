"""The flow catalog: bundled flows (read-only) plus uploaded flows kept as ``<name>.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.flows.helpers import metadata_node, node
from visionatrix.errors import Conflict, InvalidFlow, NotFound
from visionatrix.flows import FlowCatalog

ROOT = Path(__file__).resolve().parents[3]
BUNDLED = ROOT / "flows"


def _graph(name: str, display_name: str = "Test Flow") -> dict:
    return {
        "1": metadata_node(name=name, display_name=display_name),
        "2": node("LoadImage", {"image": ""}, title="input;Image;custom_id=image"),
        "3": node("SaveImage", {"images": ["2", 0], "filename_prefix": "out"}),
    }


@pytest.fixture
def catalog(tmp_path: Path, pack_object_info: dict) -> FlowCatalog:
    return FlowCatalog([BUNDLED], tmp_path / "user_flows", pack_object_info)


def test_bundled_flows_are_listed_and_marked_bundled(catalog: FlowCatalog) -> None:
    bundled = sorted(json.loads(p.read_text())["1"]["inputs"]["name"] for p in BUNDLED.glob("*.json"))
    assert catalog.names() == bundled
    assert catalog.is_bundled("web_resize_sharpen")
    assert catalog.get("web_resize_sharpen").manifest.display_name == "Resize and sharpen for the web"
    assert catalog.problems == {}


def test_an_upload_is_stored_as_name_json_and_survives_a_new_catalog(catalog: FlowCatalog, tmp_path: Path,
                                                                     pack_object_info: dict) -> None:
    flow = catalog.add(_graph("my_flow"))
    assert flow.name == "my_flow"
    assert (tmp_path / "user_flows" / "my_flow.json").is_file()
    assert "my_flow" in catalog.names() and not catalog.is_bundled("my_flow")
    again = FlowCatalog([BUNDLED], tmp_path / "user_flows", pack_object_info)
    assert again.get("my_flow").manifest.display_name == "Test Flow"
    assert [f.name for f in again.flows()] == again.names()


def test_an_upload_may_be_json_bytes_or_text(catalog: FlowCatalog) -> None:
    assert catalog.add(json.dumps(_graph("from_bytes")).encode()).name == "from_bytes"
    assert catalog.add(json.dumps(_graph("from_text"))).name == "from_text"


def test_replacing_an_uploaded_flow_is_allowed(catalog: FlowCatalog) -> None:
    catalog.add(_graph("my_flow", "First"))
    catalog.add(_graph("my_flow", "Second"))
    assert catalog.get("my_flow").manifest.display_name == "Second"
    assert catalog.names().count("my_flow") == 1


def test_an_upload_cannot_take_a_bundled_name(catalog: FlowCatalog, tmp_path: Path) -> None:
    with pytest.raises(Conflict, match="bundled"):
        catalog.add(_graph("web_resize_sharpen"))
    assert not (tmp_path / "user_flows" / "web_resize_sharpen.json").exists()
    assert catalog.get("web_resize_sharpen").manifest.display_name == "Resize and sharpen for the web"


def test_a_file_in_the_upload_folder_that_clashes_with_a_bundled_flow_is_reported(tmp_path: Path,
                                                                                  pack_object_info: dict) -> None:
    user_dir = tmp_path / "user_flows"
    user_dir.mkdir()
    (user_dir / "sneaky.json").write_text(json.dumps(_graph("web_resize_sharpen", "Impostor")))
    catalog = FlowCatalog([BUNDLED], user_dir, pack_object_info)
    assert catalog.get("web_resize_sharpen").manifest.display_name == "Resize and sharpen for the web"
    assert "bundled" in catalog.problems[str(user_dir / "sneaky.json")]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        ("", "empty"),
        ({"1": {"inputs": {}}}, "class_type"),
    ],
)
def test_an_upload_that_does_not_import_is_refused_and_not_stored(catalog: FlowCatalog, tmp_path: Path,
                                                                  source: object, message: str) -> None:
    with pytest.raises(InvalidFlow, match=message):
        catalog.add(source)  # type: ignore[arg-type]
    assert not (tmp_path / "user_flows").exists() or not list((tmp_path / "user_flows").iterdir())


def test_a_graph_without_metadata_needs_a_name(catalog: FlowCatalog) -> None:
    graph = {"1": node("LoadImage", {"image": ""}), "2": node("SaveImage", {"images": ["1", 0]})}
    with pytest.raises(InvalidFlow, match="no flow name given"):
        catalog.add(graph)
    assert catalog.add(graph, name="unnamed_graph").name == "unnamed_graph"
    assert "unnamed_graph" in catalog.names()


def test_a_name_given_for_a_flow_with_metadata_is_ignored(catalog: FlowCatalog) -> None:
    assert catalog.add(_graph("own_name"), name="other_name").name == "own_name"
    assert "other_name" not in catalog.names()


def test_deleting_an_uploaded_flow_removes_its_file(catalog: FlowCatalog, tmp_path: Path) -> None:
    catalog.add(_graph("my_flow"))
    catalog.delete("my_flow")
    assert "my_flow" not in catalog.names()
    assert not (tmp_path / "user_flows" / "my_flow.json").exists()
    with pytest.raises(NotFound):
        catalog.get("my_flow")


def test_deleting_a_bundled_flow_uninstalls_it_until_it_is_installed_again(catalog: FlowCatalog,
                                                                           tmp_path: Path) -> None:
    catalog.delete("web_resize_sharpen")
    assert "web_resize_sharpen" not in catalog.names()
    with pytest.raises(NotFound):
        catalog.get("web_resize_sharpen")
    with pytest.raises(NotFound):
        catalog.delete("web_resize_sharpen")  # already uninstalled
    assert ("web_resize_sharpen", False) in [(flow.name, on) for flow, on in catalog.bundled_flows()]
    assert catalog.is_bundled("web_resize_sharpen")

    # the choice survives a restart (a new catalog over the same folders)
    again = FlowCatalog([BUNDLED], tmp_path / "user_flows", catalog.object_info)
    assert "web_resize_sharpen" not in again.names()
    assert again.install_bundled("web_resize_sharpen").name == "web_resize_sharpen"
    assert again.get("web_resize_sharpen").name == "web_resize_sharpen"
    assert again.install_bundled("web_resize_sharpen").name == "web_resize_sharpen"  # installing twice is fine
    assert all(on for _flow, on in again.bundled_flows())


def test_installing_what_is_not_bundled_and_deleting_the_unknown_are_not_found(catalog: FlowCatalog) -> None:
    catalog.add(_graph("my_flow"))
    for name in ("my_flow", "no_such_flow", "../web_resize_sharpen"):
        with pytest.raises(NotFound):
            catalog.install_bundled(name)
    with pytest.raises(NotFound):
        catalog.delete("no_such_flow")


def test_a_damaged_list_of_uninstalled_flows_counts_as_empty(catalog: FlowCatalog, tmp_path: Path) -> None:
    (tmp_path / "user_flows").mkdir()
    (tmp_path / "user_flows" / ".uninstalled_bundled").write_text("{not json")
    catalog.refresh()
    assert "web_resize_sharpen" in catalog.names()
    assert not catalog.problems.get(str(tmp_path / "user_flows" / ".uninstalled_bundled"))


@pytest.mark.parametrize("name", ["../web_resize_sharpen", "a/b", "UPPER", "", "..", "x.json/.."])
def test_names_that_are_not_plain_ids_are_not_found(catalog: FlowCatalog, name: str) -> None:
    with pytest.raises(NotFound):
        catalog.get(name)
