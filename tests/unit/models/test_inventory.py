"""ModelInventory: each catalog model installed, missing, partial or corrupt; verify, remove and orphans."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from visionatrix.errors import Conflict, ModelError, NotFound
from visionatrix.models.catalog import ModelsCatalog
from visionatrix.models.folders import ModelFolders
from visionatrix.models.inventory import VERIFIED_FILE, ModelInventory, ModelState

DATA = {name: os.urandom(size) for name, size in (("Up", 300), ("Lora", 120), ("Unet", 50), ("Nohash", 10),
                                                   ("Root", 20))}


def _entry(name: str, folder: list[str], filename: str, *, with_hash: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"url": f"https://example.org/{filename}", "types": folder, "filename": filename,
                             "file_size": len(DATA[name])}
    if with_hash:
        entry["hash"] = hashlib.sha256(DATA[name]).hexdigest()
    return entry


CATALOG = {
    "Up": _entry("Up", ["upscale_models"], "4x.pth"),
    "Lora": _entry("Lora", ["loras"], "sliders/smile.pt"),
    "Unet": _entry("Unet", ["diffusion_models", "unet"], "flux.safetensors"),
    "Nohash": _entry("Nohash", ["vae"], "v.safetensors", with_hash=False),
    "Root": _entry("Root", [], "custom_nodes/pack/ckpts/r.pth"),
}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _inventory(models: Path, extra: dict[str, list[Path]] | None = None, **kwargs: Any) -> ModelInventory:
    return ModelInventory(ModelFolders(models, extra), ModelsCatalog(CATALOG), **kwargs)


def _states(inventory: ModelInventory) -> dict[str, str]:
    return {status.model.name: str(status.state) for status in inventory.statuses()}


def test_states_come_from_the_files_and_their_sizes(models: Path) -> None:
    _write(models / "upscale_models" / "4x.pth", DATA["Up"])
    _write(models / "loras" / "sliders" / "smile.pt.part", DATA["Lora"][:70])
    _write(models / "unet" / "flux.safetensors", DATA["Unet"][:-1])
    _write(models / "custom_nodes" / "pack" / "ckpts" / "r.pth", DATA["Root"])
    inventory = _inventory(models)
    assert _states(inventory) == {"Up": "installed", "Lora": "partial", "Unet": "corrupt", "Nohash": "missing",
                                  "Root": "installed"}
    partial, corrupt = inventory.status("Lora"), inventory.status("Unet")
    assert partial.bytes_on_disk == 70 and partial.path == models / "loras" / "sliders" / "smile.pt.part"
    assert corrupt.problem == f"{len(DATA['Unet']) - 1} bytes, the catalog says {len(DATA['Unet'])}"
    assert inventory.present() == ["Root", "Up"]
    with pytest.raises(NotFound):
        inventory.status("Nope")


def test_a_model_in_an_extra_collection_counts_as_installed(models: Path, tmp_path: Path) -> None:
    collection = tmp_path / "comfy" / "models" / "unet"
    _write(collection / "flux.safetensors", DATA["Unet"])
    status = _inventory(models, {"unet": [collection]}).status("Unet")
    assert status.state == ModelState.INSTALLED and status.path == collection / "flux.safetensors"


def test_verify_hashes_files_records_them_and_a_mismatch_stays_corrupt(models: Path) -> None:
    good = _write(models / "upscale_models" / "4x.pth", DATA["Up"])
    flipped = bytes([DATA["Lora"][0] ^ 1]) + DATA["Lora"][1:]
    bad = _write(models / "loras" / "sliders" / "smile.pt", flipped)
    _write(models / "vae" / "v.safetensors", DATA["Nohash"])
    inventory = _inventory(models)
    assert inventory.status("Lora").state == ModelState.INSTALLED  # the size is right; no hash taken yet
    results = {status.model.name: status for status in inventory.verify()}
    assert set(results) == {"Up", "Lora", "Nohash"}
    assert results["Up"].state == ModelState.INSTALLED and results["Up"].problem is None
    assert results["Lora"].state == ModelState.CORRUPT
    assert results["Lora"].problem == (f"sha256 {hashlib.sha256(flipped).hexdigest()} does not match the catalog's "
                                       f"{CATALOG['Lora']['hash']}")
    assert results["Nohash"].state == ModelState.INSTALLED and "no sha256" in (results["Nohash"].problem or "")
    records = json.loads((models / VERIFIED_FILE).read_text())
    assert records[str(good.absolute())] == {"size": 300, "mtime_ns": good.stat().st_mtime_ns,
                                             "sha256": CATALOG["Up"]["hash"]}
    fresh = _inventory(models)  # a new process reads the sidecar
    assert fresh.status("Lora").state == ModelState.CORRUPT and fresh.status("Up").state == ModelState.INSTALLED
    _write(bad, DATA["Lora"])  # repaired: a new mtime, the old record no longer applies
    os.utime(bad, ns=(bad.stat().st_atime_ns, bad.stat().st_mtime_ns + 10**9))
    assert fresh.status("Lora").state == ModelState.INSTALLED
    assert [s.state for s in fresh.verify(["Lora", "Unet"])] == [ModelState.INSTALLED, ModelState.MISSING]
    assert not [path for path in models.iterdir() if path.name.endswith(".tmp")]


def test_verify_skips_hashing_a_file_of_the_wrong_size(models: Path) -> None:
    _write(models / "upscale_models" / "4x.pth", DATA["Up"] + b"!")
    [status] = _inventory(models).verify(["Up"])
    assert status.state == ModelState.CORRUPT and not (models / VERIFIED_FILE).exists()


def test_an_unreadable_sidecar_counts_as_no_records(models: Path) -> None:
    _write(models / "upscale_models" / "4x.pth", DATA["Up"])
    _write(models / VERIFIED_FILE, b"{broken")
    inventory = _inventory(models)
    assert inventory.status("Up").state == ModelState.INSTALLED
    assert inventory.verify(["Up"])[0].state == ModelState.INSTALLED
    assert json.loads((models / VERIFIED_FILE).read_text())


def test_remove_deletes_the_file_and_its_part_from_models_dir(models: Path) -> None:
    final = _write(models / "loras" / "sliders" / "smile.pt", DATA["Lora"])
    part = _write(models / "loras" / "sliders" / "smile.pt.part", b"xx")
    inventory = _inventory(models)
    inventory.verify(["Lora"])
    assert inventory.remove("Lora") == [final, part]
    assert not final.exists() and not part.exists()
    assert str(final.absolute()) not in json.loads((models / VERIFIED_FILE).read_text())
    assert inventory.status("Lora").state == ModelState.MISSING
    assert inventory.remove("Lora") == []


def test_remove_refuses_a_file_of_an_external_collection(models: Path, tmp_path: Path) -> None:
    theirs = _write(tmp_path / "a1111" / "ESRGAN" / "4x.pth", DATA["Up"])
    inventory = _inventory(models, {"upscale_models": [theirs.parent]})
    with pytest.raises(ModelError, match="external collection"):
        inventory.remove("Up")
    assert theirs.exists()


def test_remove_refuses_while_the_model_downloads(models: Path) -> None:
    final = _write(models / "upscale_models" / "4x.pth", DATA["Up"])
    with pytest.raises(Conflict, match="being downloaded"):
        _inventory(models, busy=lambda name: name == "Up").remove("Up")
    assert final.exists()


def test_orphans_are_models_dir_files_not_needed_and_never_extra_paths(models: Path, tmp_path: Path) -> None:
    needed = _write(models / "upscale_models" / "4x.pth", DATA["Up"])
    spare = _write(models / "checkpoints" / "old" / "sd15.ckpt", b"x")
    stray = _write(models / "stray.safetensors", b"x")
    _write(models / "checkpoints" / "notes.txt", b"x")
    _write(models / "loras" / "x.pt.part", b"x")
    _write(tmp_path / "ext" / "unused.safetensors", b"x")
    inventory = _inventory(models, {"checkpoints": [tmp_path / "ext"]})
    assert inventory.orphans([needed]) == [spare, stray]
    assert inventory.orphans([]) == [spare, stray, needed]
