"""The ``folder_paths`` stand-in answers from the model folders of the running node context (what a node pack's
model-file inputs show in ``object_info``, and where packs find their models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from visionatrix.nodes import comfy_compat
from visionatrix.nodes.context import NodeContext, use


def test_model_files_of_the_context_folder(tmp_path: Path) -> None:
    comfy_compat.install()
    folder_paths = sys.modules["folder_paths"]
    (tmp_path / "checkpoints" / "sd").mkdir(parents=True)
    (tmp_path / "checkpoints" / "b.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoints" / "sd" / "a.ckpt").write_bytes(b"x")
    (tmp_path / "checkpoints" / ".hidden").write_bytes(b"x")
    with use(NodeContext(models_dir=tmp_path)):
        assert folder_paths.get_filename_list("checkpoints") == ["b.safetensors", "sd/a.ckpt"]
        assert folder_paths.get_filename_list("loras") == []
        assert folder_paths.get_filename_list("../checkpoints") == []
    with use(NodeContext()):
        assert folder_paths.get_filename_list("checkpoints") == []


def _folder_paths():
    comfy_compat.install()
    return sys.modules["folder_paths"]


def test_folder_paths_answers_from_the_contexts_model_folders(tmp_path: Path) -> None:
    from visionatrix.models.folders import ModelFolders

    folder_paths = _folder_paths()
    models, collection = tmp_path / "models", tmp_path / "comfy" / "unet"
    (models / "diffusion_models").mkdir(parents=True)
    (models / "diffusion_models" / "mine.safetensors").write_bytes(b"x")
    collection.mkdir(parents=True)
    (collection / "theirs.gguf").write_bytes(b"x")
    with use(NodeContext(model_folders=ModelFolders(models, {"unet": [collection]}), models_dir=tmp_path / "no")):
        assert folder_paths.get_filename_list("unet") == ["mine.safetensors", "theirs.gguf"]
        assert folder_paths.get_full_path("unet", "theirs.gguf") == str(collection / "theirs.gguf")
        assert folder_paths.get_full_path("unet", "../unet/theirs.gguf") is None
        assert folder_paths.get_full_path_or_raise("diffusion_models", "mine.safetensors") == str(
            models / "diffusion_models" / "mine.safetensors")
        with pytest.raises(FileNotFoundError, match=r"absent\.safetensors"):
            folder_paths.get_full_path_or_raise("unet", "absent.safetensors")
        assert folder_paths.get_folder_paths("unet") == [str(models / "diffusion_models"), str(models / "unet"),
                                                          str(collection)]
        assert folder_paths.models_dir == str(models)
        assert folder_paths.folder_names_and_paths["diffusion_models"][0][-1] == str(collection)
        assert folder_paths.map_legacy("clip") == "text_encoders" and folder_paths.map_legacy("vae") == "vae"
        assert ".safetensors" in folder_paths.supported_pt_extensions


def test_folders_a_pack_adds_while_it_is_imported_are_kept_for_every_context(tmp_path: Path) -> None:
    folder_paths = _folder_paths()
    pack_models, yolo = tmp_path / "pack_models", tmp_path / "yolo"
    pack_models.mkdir()
    (pack_models / "face.pth").write_bytes(b"x")
    yolo.mkdir()
    for name in ("det.onnx", "det.pt"):
        (yolo / name).write_bytes(b"x")
    folder_paths.add_model_folder_path("test_pack_facedetect", str(pack_models))  # no context: import time
    names = folder_paths.folder_names_and_paths
    names["test_pack_yolo"] = ([str(yolo)], {".onnx"})
    with use(NodeContext(models_dir=tmp_path / "models")):
        assert folder_paths.get_filename_list("test_pack_facedetect") == ["face.pth"]
        assert folder_paths.get_filename_list("test_pack_yolo") == ["det.onnx"]
        assert "test_pack_yolo" in folder_paths.folder_names_and_paths
    with pytest.raises(AttributeError):
        folder_paths.no_such_attribute  # noqa: B018
