"""VIX_EXTRA_MODEL_PATHS: ComfyUI's extra_model_paths.yaml, read into extra roots per canonical folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionatrix.errors import ModelError
from visionatrix.models.extra_paths import load_extra_model_paths, model_folders

A1111_AND_COMFY = """\
# a user's file, as ComfyUI documents it
a111:
    base_path: webui/
    is_default: true
    checkpoints: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN

                  models/RealESRGAN
    embeddings: embeddings
comfyui:
    base_path: ~/ComfyUI
    unet: models/unet
    clip: models/clip
    checkpoints: /mnt/shared/checkpoints
nothing_here:
other:
    controlnet: relative/cn
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "extra_model_paths.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_sections_become_roots_relative_to_base_path_and_the_files_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _write(tmp_path, A1111_AND_COMFY)
    webui, conf = tmp_path / "conf" / "webui", tmp_path / "conf"
    assert load_extra_model_paths(path) == {
        "checkpoints": [webui / "models" / "Stable-diffusion", Path("/mnt/shared/checkpoints")],
        "vae": [webui / "models" / "VAE"],
        "loras": [webui / "models" / "Lora", webui / "models" / "LyCORIS"],
        "upscale_models": [webui / "models" / "ESRGAN", webui / "models" / "RealESRGAN"],
        "embeddings": [webui / "embeddings"],
        "diffusion_models": [tmp_path / "home" / "ComfyUI" / "models" / "unet"],
        "text_encoders": [tmp_path / "home" / "ComfyUI" / "models" / "clip"],
        "controlnet": [conf / "relative" / "cn"],
    }


def test_an_empty_file_adds_nothing(tmp_path: Path) -> None:
    assert load_extra_model_paths(_write(tmp_path, "# nothing configured\n")) == {}


def test_model_folders_uses_the_files_roots_after_models_dir(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine:\n  base_path: /data\n  loras: sd/lora\n")
    folders = model_folders(tmp_path / "models", path)
    assert folders.roots("loras") == [tmp_path / "models" / "loras", Path("/data/sd/lora")]
    assert model_folders(tmp_path / "models", None).roots("loras") == [tmp_path / "models" / "loras"]


@pytest.mark.parametrize(("text", "named"), [
    ("a111: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("a111: models/checkpoints\n", "section 'a111' must be a mapping"),
    ("a111:\n  checkpoints: 5\n", "a111.checkpoints must be a path"),
    ("a111:\n  loras: [a, b]\n", "a111.loras must be a path"),
    ("a111:\n  base_path: 7\n  vae: v\n", "a111.base_path must be a non-empty path"),
    ("a111:\n  is_default: maybe\n", "a111.is_default must be true or false"),
    ("a111:\n  ../up: x\n", "a111.../up: '../up' is not a folder name"),
])
def test_a_malformed_file_is_a_model_error_naming_the_file_and_key(tmp_path: Path, text: str, named: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ModelError) as caught:
        load_extra_model_paths(path)
    assert str(path) in str(caught.value) and named in str(caught.value)


def test_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_extra_model_paths(tmp_path / "absent.yaml")
