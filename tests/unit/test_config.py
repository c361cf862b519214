from __future__ import annotations

from pathlib import Path

import pytest

from visionatrix.config import InvalidSetting, load_settings


def test_nodes_dirs_come_from_env_separated_by_semicolons_plus_flags():
    settings = load_settings({"VIX_NODES_DIRS": "/a; /b ;"}, nodes_dirs=["/c"])
    assert settings.nodes_dirs == (Path("/a"), Path("/b"), Path("/c"))


def test_flags_override_environment():
    settings = load_settings({"VIX_DEVICE": "cuda", "VIX_MAX_IMAGE_PIXELS": "100"}, device="cpu",
                             max_image_pixels=50)
    assert settings.device == "cpu"
    assert settings.max_image_pixels == 50


@pytest.mark.parametrize(("env", "message"), [({"VIX_MAX_IMAGE_PIXELS": "lots"}, "VIX_MAX_IMAGE_PIXELS"),
                                              ({"VIX_CACHE_MAX_ENTRIES": "-1"}, "VIX_CACHE_MAX_ENTRIES"),
                                              ({"VIX_DEVICE": "tpu"}, "VIX_DEVICE")])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(InvalidSetting, match=message):
        load_settings(env)


def test_defaults_without_environment():
    settings = load_settings({})
    assert settings.device is None
    assert settings.nodes_dirs == ()
    assert settings.flows_dirs[0].name == "flows"
