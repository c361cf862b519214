"""``folder_paths.get_filename_list`` lists the models folder of the running node context (what a node pack's
model-file inputs show in ``object_info``)."""

from __future__ import annotations

import sys
from pathlib import Path

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
