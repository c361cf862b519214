"""ModelFolders: ComfyUI's folder names and aliases over models_dir and extra roots, confined lookups, listings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from visionatrix.errors import ModelError
from visionatrix.models.folders import MODEL_EXTENSIONS, STANDARD_FOLDERS, ModelFolders


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_legacy_names_share_the_canonical_folder_and_its_roots_in_order(tmp_path: Path) -> None:
    models, extra = tmp_path / "models", tmp_path / "comfy" / "unet"
    folders = ModelFolders(models, {"unet": [extra], "loras": [tmp_path / "l1", tmp_path / "l2"]})
    assert folders.canonical("unet") == "diffusion_models" and folders.canonical("clip") == "text_encoders"
    assert folders.canonical("loras") == "loras"
    assert folders.roots("unet") == folders.roots("diffusion_models") == [
        models / "diffusion_models", models / "unet", extra]
    assert folders.roots("loras") == [models / "loras", tmp_path / "l1", tmp_path / "l2"]
    assert folders.roots("") == [models]
    assert folders.roots("../etc") == []


def test_files_are_the_union_of_the_roots_where_the_first_root_wins(tmp_path: Path) -> None:
    models, extra = tmp_path / "models", tmp_path / "collection"
    _touch(models / "checkpoints" / "a.safetensors", b"mine")
    _touch(models / "checkpoints" / "sd" / "b.ckpt")
    _touch(extra / "a.safetensors", b"theirs")
    _touch(extra / "deep" / "er" / "c.gguf")
    folders = ModelFolders(models, {"checkpoints": [extra]})
    assert folders.list_files("checkpoints") == ["a.safetensors", "deep/er/c.gguf", "sd/b.ckpt"]
    assert [(e.name, e.root_index) for e in folders.entries("checkpoints")] == [
        ("a.safetensors", 0), ("deep/er/c.gguf", 1), ("sd/b.ckpt", 0)]
    assert folders.find("checkpoints", "a.safetensors") == models / "checkpoints" / "a.safetensors"
    assert folders.find("checkpoints", "deep/er/c.gguf") == extra / "deep" / "er" / "c.gguf"


def test_hidden_partial_and_non_model_files_are_not_listed(tmp_path: Path) -> None:
    root = tmp_path / "upscale_models"
    for name in ("4x.pth", ".hidden.pth", "x.pth.part", "notes.txt", "put_models_here", ".cache/y.pth",
                 "UPPER.SAFETENSORS", "m.pt2", "e.onnx"):
        _touch(root / name)
    assert ModelFolders(tmp_path).list_files("upscale_models") == ["4x.pth", "UPPER.SAFETENSORS", "e.onnx",
                                                                   "m.pt2"]
    assert {".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf"} <= set(MODEL_EXTENSIONS)


def test_embeddings_list_pt_bin_and_safetensors(tmp_path: Path) -> None:
    for name in ("a.pt", "b.bin", "c.safetensors", "d.txt"):
        _touch(tmp_path / "embeddings" / name)
    assert ModelFolders(tmp_path).list_files("embeddings") == ["a.pt", "b.bin", "c.safetensors"]


@pytest.mark.parametrize("name", ["../secret.pth", "/etc/passwd", "sub/../../secret.pth", "..\\secret.pth",
                                  "a\x00.pth", "", ".hidden.pth", "sub/.git/x.pth", "C:/x.pth", "./a.pth"])
def test_find_refuses_names_that_could_leave_the_roots(tmp_path: Path, name: str) -> None:
    _touch(tmp_path / "secret.pth")
    _touch(tmp_path / "models" / "vae" / ".hidden.pth")
    _touch(tmp_path / "models" / "vae" / "a.pth")
    assert ModelFolders(tmp_path / "models").find("vae", name) is None


def test_symlinks_inside_the_roots_are_followed_but_never_out_of_them(tmp_path: Path) -> None:
    models, outside, store = tmp_path / "models", tmp_path / "outside", tmp_path / "store"
    _touch(outside / "leak.pth")
    _touch(store / "big" / "real.safetensors")
    _touch(models / "loras" / "style.pt")
    (models / "checkpoints").mkdir(parents=True)
    os.symlink(outside / "leak.pth", models / "checkpoints" / "leak.pth")
    os.symlink(outside, models / "checkpoints" / "outdir")
    os.symlink(models / "loras" / "style.pt", models / "checkpoints" / "style.pt")
    os.symlink(store / "big", models / "vae")  # a root that is itself a symlink
    folders = ModelFolders(models)
    assert folders.list_files("checkpoints") == ["style.pt"]
    assert folders.find("checkpoints", "leak.pth") is None
    assert folders.find("checkpoints", "outdir/leak.pth") is None
    assert folders.find("checkpoints", "style.pt") == models / "checkpoints" / "style.pt"
    assert folders.list_files("vae") == ["real.safetensors"]
    assert folders.find("vae", "real.safetensors") == models / "vae" / "real.safetensors"


def test_a_symlink_loop_is_listed_once(tmp_path: Path) -> None:
    _touch(tmp_path / "loras" / "a.pt")
    os.symlink(tmp_path / "loras", tmp_path / "loras" / "again")
    assert ModelFolders(tmp_path).list_files("loras") == ["a.pt"]


def test_listings_follow_changes_at_any_depth(tmp_path: Path) -> None:
    folders = ModelFolders(tmp_path)
    deep = _touch(tmp_path / "loras" / "a" / "b" / "one.pt")
    assert folders.list_files("loras") == ["a/b/one.pt"]
    _touch(tmp_path / "loras" / "a" / "b" / "two.pt")
    assert folders.list_files("loras") == ["a/b/one.pt", "a/b/two.pt"]
    deep.unlink()
    assert folders.list_files("loras") == ["a/b/two.pt"]
    _touch(tmp_path / "loras" / "top.pt")
    assert folders.list_files("loras") == ["a/b/two.pt", "top.pt"]


def test_a_root_that_appears_later_is_listed(tmp_path: Path) -> None:
    folders = ModelFolders(tmp_path / "models")
    assert folders.list_files("vae") == []
    _touch(tmp_path / "models" / "vae" / "v.safetensors")
    assert folders.list_files("vae") == ["v.safetensors"]


def test_install_path_is_confined_to_the_canonical_folder_of_models_dir(tmp_path: Path) -> None:
    folders = ModelFolders(tmp_path, {"loras": [tmp_path / "elsewhere"]})
    assert folders.install_path("unet", "sub/f.safetensors") == tmp_path / "diffusion_models" / "sub" / "f.safetensors"
    assert folders.install_path("", "custom_nodes/x/rife.pth") == tmp_path / "custom_nodes" / "x" / "rife.pth"
    for folder, name in (("loras", "../x.pt"), ("loras", "/abs.pt"), ("../loras", "x.pt"), ("loras", "a\\..\\b")):
        with pytest.raises(ModelError, match="would leave the models folder"):
            folders.install_path(folder, name)


def test_folder_names_are_the_standard_ones_then_other_subfolders_and_extra_folders(tmp_path: Path) -> None:
    for name in ("unet", "birefnet", ".cache", "checkpoints"):
        (tmp_path / name).mkdir()
    (tmp_path / "file.safetensors").write_bytes(b"x")
    folders = ModelFolders(tmp_path, {"yolo": [tmp_path / "y"]})
    assert folders.folder_names() == [*STANDARD_FOLDERS, "birefnet", "yolo"]
    shape = folders.folder_names_and_paths()
    assert shape["yolo"] == ([str(tmp_path / "yolo"), str(tmp_path / "y")], set(MODEL_EXTENSIONS))
    assert shape["text_encoders"][0] == [str(tmp_path / "text_encoders"), str(tmp_path / "clip")]


def test_added_paths_are_kept_once_and_extensions_can_be_narrowed(tmp_path: Path) -> None:
    _touch(tmp_path / "pack" / "m.onnx")
    _touch(tmp_path / "pack" / "m.pt")
    folders = ModelFolders(tmp_path / "models")
    folders.add_path("yolo", tmp_path / "pack")
    folders.add_path("yolo", tmp_path / "pack")
    folders.add_path("yolo", tmp_path / "models" / "yolo")
    assert folders.roots("yolo") == [tmp_path / "models" / "yolo", tmp_path / "pack"]
    folders.set_extensions("yolo", [".ONNX"])
    assert folders.list_files("yolo") == ["m.onnx"]
    with pytest.raises(ModelError, match="not a plain folder name"):
        folders.add_path("../x", tmp_path)
