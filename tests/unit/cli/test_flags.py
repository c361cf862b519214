"""``run``'s worker flags reach the settings (each one overrides its environment variable)."""

from __future__ import annotations

from visionatrix.cli.main import _FLAGS, build_parser
from visionatrix.config import load_settings


def _settings(argv: list[str], env: dict[str, str]):
    args = build_parser().parse_args(["run", *argv])
    return load_settings(env, **{name: getattr(args, name, None) for name in _FLAGS})


def test_worker_flags_override_the_environment():
    settings = _settings(["--flows", "a", "--flows", "b", "--worker-name", "gpu-2", "--worker-auth", "vix:pw",
                          "--models-dir", "/models", "--no-claim-ahead"],
                         {"VIX_WORKER_FLOWS": "c", "VIX_WORKER_NAME": "env", "VIX_WORKER_CLAIM_AHEAD": "1"})
    assert settings.worker_flows == ("a", "b") and settings.worker_id == "gpu-2"
    assert settings.worker_auth == "vix:pw" and str(settings.models_dir) == "/models"
    assert settings.claim_ahead is False


def test_without_flags_the_environment_decides():
    settings = _settings([], {"VIX_WORKER_CLAIM_AHEAD": "no", "VIX_WORKER_FLOWS": "c"})
    assert settings.claim_ahead is False and settings.worker_flows == ("c",)
    assert _settings([], {}).claim_ahead is True
