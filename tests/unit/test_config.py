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


def test_service_settings_from_environment():
    settings = load_settings({"VIX_HOST": "0.0.0.0", "VIX_PORT": "9000", "DATABASE_URI": "postgresql+asyncpg://u@h/db",
                              "TASKS_FILES_DIR": "/data/files", "VIX_TASK_LEASE_S": "30", "VIX_MODE": "server"})
    assert (settings.host, settings.port, settings.mode) == ("0.0.0.0", 9000, "SERVER")
    assert settings.database_uri == "postgresql+asyncpg://u@h/db"
    assert settings.tasks_files_dir == Path("/data/files")
    assert settings.task_lease_s == 30.0
    assert settings.queue_vacuum_every == 2_000
    assert load_settings({"VIX_QUEUE_VACUUM_EVERY": "0"}).queue_vacuum_every == 0  # never vacuum


def test_service_flags_override_environment():
    settings = load_settings({"VIX_PORT": "9000", "TASKS_FILES_DIR": "/a"}, port=9100, tasks_files_dir="/b")
    assert settings.port == 9100
    assert settings.tasks_files_dir == Path("/b")


@pytest.mark.parametrize(("env", "name"), [({"VIX_PORT": "http"}, "VIX_PORT"), ({"VIX_PORT": "70000"}, "VIX_PORT"),
                                           ({"DATABASE_URI": "oracle://x"}, "DATABASE_URI"),
                                           ({"VIX_MODE": "turbo"}, "VIX_MODE"),
                                           ({"VIX_TASK_LEASE_S": "0"}, "VIX_TASK_LEASE_S"),
                                           ({"VIX_MAX_UPLOAD_BYTES": "big"}, "VIX_MAX_UPLOAD_BYTES"),
                                           ({"VIX_QUEUE_VACUUM_EVERY": "-1"}, "VIX_QUEUE_VACUUM_EVERY"),
                                           ({"VIX_QUEUE_VACUUM_EVERY": "often"}, "VIX_QUEUE_VACUUM_EVERY")])
def test_bad_service_settings_name_the_variable(env, name):
    with pytest.raises(InvalidSetting, match=name):
        load_settings(env)


def test_worker_settings_from_environment_and_flags():
    settings = load_settings({"VIX_MODE": "worker", "VIX_HOST": "http://server:8288/", "VIX_WORKER_NAME": "gpu-1",
                              "VIX_WORKER_FLOWS": "a; b;a ;", "WORKER_AUTH": "vix:secret", "VIX_POLL_MIN_S": "0.1",
                              "VIX_POLL_MAX_S": "3", "VIX_LONG_POLL_S": "5", "VIX_MODELS_DIR": "/m"})
    assert settings.server_url == "http://server:8288"
    assert settings.host == "127.0.0.1", "in WORKER mode VIX_HOST is the server's URL, not a bind address"
    assert (settings.worker_id, settings.worker_flows, settings.worker_auth) == ("gpu-1", ("a", "b"), "vix:secret")
    assert (settings.poll_min_s, settings.poll_max_s, settings.long_poll_s) == (0.1, 3.0, 5.0)
    assert settings.models_dir == Path("/m")
    flagged = load_settings({"VIX_WORKER_FLOWS": "a"}, flows=["x", "y"], worker_name="cli")
    assert (flagged.worker_flows, flagged.worker_id) == (("x", "y"), "cli")
    assert settings.claim_ahead and flagged.claim_ahead
    assert not load_settings({"VIX_WORKER_CLAIM_AHEAD": "off"}).claim_ahead
    assert load_settings({"VIX_WORKER_CLAIM_AHEAD": "Yes"}).claim_ahead
    assert not load_settings({"VIX_WORKER_CLAIM_AHEAD": "1"}, claim_ahead=False).claim_ahead


def test_worker_without_host_is_database_fs_and_named_after_host_and_device():
    settings = load_settings({"VIX_MODE": "WORKER", "VIX_DEVICE": "cpu", "VIX_WORKER_ID": ""})
    assert settings.server_url is None
    assert settings.worker_id.endswith(":cpu") and settings.worker_flows is None
    assert load_settings({"VIX_WORKER_ID": "old-name"}).worker_id == "old-name", "VIX_WORKER_ID stays an alias"


@pytest.mark.parametrize(("env", "message"), [
    ({"VIX_MODE": "WORKER", "VIX_HOST": "server:8288"}, "VIX_HOST"),
    ({"VIX_MODE": "WORKER", "VIX_HOST": "http://"}, "VIX_HOST"),
    ({"VIX_WORKER_FLOWS": " ; ;"}, "VIX_WORKER_FLOWS"),
    ({"WORKER_AUTH": "user:"}, "WORKER_AUTH"),
    ({"WORKER_AUTH": ":pw"}, "WORKER_AUTH"),
    ({"WORKER_AUTH": "to ken"}, "WORKER_AUTH"),
    ({"VIX_POLL_MIN_S": "2", "VIX_POLL_MAX_S": "1"}, "VIX_POLL_MAX_S"),
    ({"VIX_LONG_POLL_S": "31"}, "VIX_LONG_POLL_S"),
    ({"VIX_POLL_MIN_S": "fast"}, "VIX_POLL_MIN_S"),
    ({"VIX_WORKER_CLAIM_AHEAD": "maybe"}, "VIX_WORKER_CLAIM_AHEAD"),
])
def test_bad_worker_settings_name_the_variable(env, message):
    with pytest.raises(InvalidSetting, match=message):
        load_settings(env)
