"""``GET /view_metadata/{folder}?filename=``: a safetensors model's ``__metadata__`` (``server/comfy/shell.py``,
``models/safetensors_header.py``), over a real server and real safetensors files."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from safetensors.numpy import save_file

from visionatrix.errors import ModelFileError
from visionatrix.models.safetensors_header import read_header, read_metadata
from visionatrix.server.comfy import PREFIXES
from visionatrix.server.services import Services

METADATA = {"ss_network_dim": "16", "modelspec.title": "Tiny LoRA", "format": "pt"}


def _model(root: Path, relative: str, metadata: dict[str, str] | None) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(path), metadata=metadata)
    return path


def _raw(path: Path, header: bytes, length: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header)
    return path


@pytest.fixture
def models(services: Services) -> Path:
    assert services.models_dir is not None
    root = services.models_dir
    _model(root, "loras/style.safetensors", METADATA)
    _model(root, "loras/sub/plain.safetensors", None)
    _model(root, "checkpoints/sd.safetensors", {"note": "in checkpoints"})
    _raw(root / "loras" / "broken.safetensors", b"{not json")
    (root / "loras" / "old.ckpt").write_bytes(b"\x80\x02}q\x00.")
    return root


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_a_safetensors_models_metadata_is_answered_as_json(http: TestClient, models: Path,
                                                                 prefix: str) -> None:
    response = await http.get(f"{prefix}/view_metadata/loras", params={"filename": "style.safetensors"})
    assert response.status == 200
    assert await response.json() == METADATA
    response = await http.get(f"{prefix}/view_metadata/checkpoints", params={"filename": "sd.safetensors"})
    assert await response.json() == {"note": "in checkpoints"}


@pytest.mark.parametrize(("folder", "filename", "kind"), [
    ("loras", "sub/plain.safetensors", "metadata of loras"),
    ("loras", "missing.safetensors", "model file in loras"),
    ("loras", "old.ckpt", "safetensors file"),
    ("loras", "../checkpoints/sd.safetensors", "model file in loras"),
    ("loras", "/etc/passwd.safetensors", "model file in loras"),
    ("nosuchfolder", "style.safetensors", "model folder"),
])
async def test_what_is_absent_or_outside_the_folder_is_a_404_naming_it(http: TestClient, models: Path, folder: str,
                                                                       filename: str, kind: str) -> None:
    response = await http.get(f"/view_metadata/{folder}", params={"filename": filename})
    assert response.status == 404
    body = await response.json()
    assert body["details"]["kind"] == kind


async def test_a_missing_filename_is_a_400(http: TestClient, models: Path) -> None:
    response = await http.get("/view_metadata/loras")
    assert response.status == 400
    assert (await response.json())["error"] == "missing_filename"


async def test_a_file_that_is_not_safetensors_inside_is_a_400_naming_it_without_its_path(
        http: TestClient, models: Path) -> None:
    response = await http.get("/view_metadata/loras", params={"filename": "broken.safetensors"})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_model"
    assert body["details"]["path"] == "loras/broken.safetensors"
    assert str(models) not in json.dumps(body)


def test_the_header_reader_agrees_with_the_safetensors_library(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = _model(tmp_path, "m.safetensors", METADATA)
    header = read_header(path)
    with safe_open(str(path), framework="numpy") as handle:
        assert header["__metadata__"] == handle.metadata()
        assert header["weight"]["shape"] == list(handle.get_tensor("weight").shape)
    assert read_metadata(_model(tmp_path, "n.safetensors", None)) is None


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "shorter than its 8-byte header length"),
    (b"\x01\x02", "shorter than its 8-byte header length"),
    (struct.pack("<Q", 2**40) + b"{}", "header length 1099511627776 is outside"),
    (struct.pack("<Q", 100) + b"{}", "its header is cut short (2 of 100 bytes)"),
    (struct.pack("<Q", 2) + b"[]", "its header is not a JSON object"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "its header is not JSON"),
    (struct.pack("<Q", 23) + b'{"__metadata__": [1,2]}', "its __metadata__ is not a JSON object"),
])
def test_a_bad_file_is_refused_with_what_is_wrong(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as raised:
        read_metadata(path, name="loras/bad.safetensors")
    assert reason in raised.value.reason
    assert raised.value.path == "loras/bad.safetensors"


def test_a_deeply_nested_header_is_refused_not_a_crash(tmp_path: Path) -> None:
    deep: Any = b"[" * 100_000 + b"]" * 100_000
    path = _raw(tmp_path / "deep.safetensors", deep)
    with pytest.raises(ModelFileError, match="not JSON"):
        read_header(path)
