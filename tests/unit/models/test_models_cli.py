"""``python -m visionatrix models``: list, install, verify, remove and orphans, run in-process through ``main``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.model_server import ServedFile, model_server_thread
from visionatrix.cli.main import main
from visionatrix.cli.models_cmd import human_bytes

TINY = os.urandom(3000)
OTHER = os.urandom(100)
FLOW = {"1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "tiny-up.pth"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}


def _entry(data: bytes, url: str, filename: str, folder: str, regex: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": url, "hash": hashlib.sha256(data).hexdigest(), "filename": filename,
                             "types": [folder], "file_size": len(data)}
    if regex:
        entry["regexes"] = [{"class_name": "UpscaleModelLoader", "input_value": regex}]
    return entry


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder, a catalog of two models and a flows folder with one flow that loads ``Tiny``; the
    environment points the command at them."""
    models = tmp_path / "models"
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "tiny_up.json").write_text(json.dumps(FLOW))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIX_MODELS_DIR", str(models))
    monkeypatch.setenv("VIX_FLOWS_DIRS", str(flows))
    monkeypatch.setenv("VIX_USER_FLOWS_DIR", str(tmp_path / "user_flows"))
    monkeypatch.setenv("VIX_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
    for name in ("VIX_EXTRA_MODEL_PATHS", "VIX_NODES_DIRS", "HF_TOKEN", "CIVITAI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    _catalog(tmp_path, "http://127.0.0.1:9/")
    monkeypatch.setenv("VIX_MODELS_CATALOG", str(tmp_path / "catalog.json"))
    return models


def _catalog(tmp_path: Path, base_url: str) -> None:
    catalog = {"Tiny": _entry(TINY, f"{base_url}tiny.pth", "tiny.pth", "upscale_models", "^tiny-up"),
               "Other": _entry(OTHER, f"{base_url}other.pt", "styles/other.pt", "loras")}
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))


def _put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_model_with_folder_state_and_human_size(store: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _put(store / "loras" / "styles" / "other.pt.part", OTHER[:40])
    code, out, err = _run(capsys, "list")
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["NAME", "FOLDER", "STATE", "SIZE", "NOTE"]
    assert lines[1] == ["Other", "loras", "partial", "40", "B", "of", "100", "B"]
    assert lines[2] == ["Tiny", "upscale_models", "missing", "2.9", "KiB"]
    assert "1 missing, 1 partial" in err


def test_list_json_and_a_flows_models(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _put(store / "upscale_models" / "tiny.pth", TINY)
    code, out, _ = _run(capsys, "list", "--json")
    assert code == 0
    views = {view["name"]: view for view in json.loads(out)}
    assert views["Tiny"]["state"] == "installed" and views["Tiny"]["bytes_on_disk"] == len(TINY)
    assert views["Tiny"]["path"] == str(store / "upscale_models" / "tiny.pth")
    assert views["Other"]["state"] == "missing" and views["Other"]["folder"] == "loras"
    code, out, _ = _run(capsys, "list", "--json", "--flow", "tiny_up")
    assert code == 0 and [view["name"] for view in json.loads(out)] == ["Tiny"]


def test_unknown_model_names_exit_2_naming_every_one(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("install", "Tiny", "Nope", "Gone"), ("verify", "Nope", "Gone"), ("remove", "Nope", "Gone")):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and "Nope" in err and "Gone" in err, argv
    code, _, err = _run(capsys, "install")
    assert code == 2 and "give model names or --flow" in err
    code, _, err = _run(capsys, "install", "--flow", "no_such_flow")
    assert code == 2 and "no_such_flow" in err


def test_a_bad_catalog_or_extra_paths_file_exits_2(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "catalog.json").write_text("{broken")
    code, _, err = _run(capsys, "list")
    assert code == 2 and "catalog.json" in err and "not valid JSON" in err
    _catalog(tmp_path, "http://127.0.0.1:9/")
    (tmp_path / "extra.yaml").write_text("a111: [x\n")
    code, _, err = _run(capsys, "list", "--extra-model-paths", str(tmp_path / "extra.yaml"))
    assert code == 2 and "extra.yaml" in err


def test_verify_exits_1_when_a_file_is_corrupt(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _put(store / "upscale_models" / "tiny.pth", TINY)
    code, out, _ = _run(capsys, "verify")
    assert code == 0 and out.strip() == "Tiny: ok"
    _put(store / "loras" / "styles" / "other.pt", bytes(len(OTHER)))
    code, out, _ = _run(capsys, "verify")
    assert code == 1 and "Other: corrupt (sha256" in out and "Tiny: ok" in out
    code, out, _ = _run(capsys, "list", "--json")
    assert {view["name"]: view["state"] for view in json.loads(out)} == {"Other": "corrupt", "Tiny": "installed"}


def test_remove_deletes_from_models_dir(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    final = _put(store / "upscale_models" / "tiny.pth", TINY)
    code, out, _ = _run(capsys, "remove", "Tiny")
    assert code == 0 and str(final) in out and not final.exists()
    code, out, _ = _run(capsys, "remove", "Tiny")
    assert code == 0 and "nothing to remove" in out


def test_orphans_are_files_no_installed_flow_needs(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _put(store / "upscale_models" / "tiny.pth", TINY)
    spare = _put(store / "loras" / "styles" / "other.pt", OTHER)
    code, out, err = _run(capsys, "orphans", "--json")
    assert code == 0 and json.loads(out) == [{"path": str(spare), "size": len(OTHER)}]
    assert "1 file(s)" in err


def test_install_downloads_the_named_models_with_progress_lines(store: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with model_server_thread({"/tiny.pth": ServedFile(TINY, chunk_bytes=500), "/other.pt": OTHER}) as server:
        _catalog(tmp_path, server.url("/"))
        code, _, err = _run(capsys, "install", "Tiny", "Other")
        assert code == 0, err
        assert (store / "upscale_models" / "tiny.pth").read_bytes() == TINY
        assert (store / "loras" / "styles" / "other.pt").read_bytes() == OTHER
        assert "Tiny: installed" in err and "Other: installed" in err
        code, _, err = _run(capsys, "install", "Tiny")
        assert code == 0 and "Tiny: already installed" in err


def test_install_a_flows_models_and_fail_on_a_bad_download(store: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with model_server_thread({"/tiny.pth": ServedFile(TINY, corrupt=True)}) as server:
        _catalog(tmp_path, server.url("/"))
        code, _, err = _run(capsys, "install", "--flow", "tiny_up")
        assert code == 1 and "Tiny: failed" in err
        assert not (store / "upscale_models" / "tiny.pth").exists()
        server.serve("/tiny.pth", TINY)
        code, _, err = _run(capsys, "install", "--flow", "tiny_up")
        assert code == 0, err
        assert (store / "upscale_models" / "tiny.pth").read_bytes() == TINY


def test_human_sizes() -> None:
    assert [human_bytes(n) for n in (None, 0, 1023, 1536, 5 * 1024**2, 3 * 1024**3, 5000 * 1024**3)] == [
        "?", "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 GiB", "5000.0 GiB"]
