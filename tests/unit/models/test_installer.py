"""ModelInstaller: jobs per catalog model, the concurrency limit, cancel and resume, failures, progress."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.model_server import ModelServer, ServedFile
from visionatrix.errors import ModelError, NotFound
from visionatrix.models import part_file
from visionatrix.models.catalog import ModelsCatalog
from visionatrix.models.folders import ModelFolders
from visionatrix.models.hosts import DownloadPolicy
from visionatrix.models.installer import ModelInstaller

POLICY = DownloadPolicy(allow_hosts=frozenset({"127.0.0.1"}), retries=1, backoff_s=0.01, timeout_s=5,
                        chunk_bytes=32 * 1024)


def blob(name: str, size: int = 400_000) -> bytes:
    return (hashlib.sha256(name.encode()).digest() * (size // 32 + 1))[:size]


def entry(server: ModelServer, name: str, data: bytes, **faults) -> dict:
    url = server.serve(f"/{name}.safetensors", ServedFile(data, **faults))
    return {"url": url, "hash": hashlib.sha256(data).hexdigest(), "file_size": len(data),
            "filename": f"{name}.safetensors", "types": ["upscale_models"]}


@pytest.fixture
async def server():
    async with ModelServer() as running:
        yield running


@pytest.fixture
def folders(tmp_path) -> ModelFolders:
    return ModelFolders(tmp_path / "models")


@pytest.fixture
async def make(folders):
    made: list[ModelInstaller] = []

    def build(catalog: ModelsCatalog, max_concurrent: int = 2, events: list | None = None) -> ModelInstaller:
        installer = ModelInstaller(folders, catalog, POLICY, max_concurrent=max_concurrent,
                                   on_progress=events.append if events is not None else None)
        made.append(installer)
        return installer

    yield build
    for installer in made:
        await installer.aclose()


def installed_path(folders: ModelFolders, name: str):
    return folders.install_path("upscale_models", f"{name}.safetensors")


async def eventually(condition, what: str = "the condition") -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} never came true")


async def wait_for_bytes(path, at_least: int) -> None:
    await eventually(lambda: path.exists() and path.stat().st_size >= at_least, f"{path} of {at_least} bytes")


async def test_installs_each_model_and_reports_installed(server, folders, make):
    data = {name: blob(name) for name in ("a", "b", "c")}
    catalog = ModelsCatalog({name: entry(server, name, d) for name, d in data.items()})
    events: list = []
    installer = make(catalog, events=events)
    assert installer.start(["a", "b", "c"]) == ["a", "b", "c"]
    ended = await installer.wait()
    assert {name: p.state for name, p in ended.items()} == dict.fromkeys(data, "installed")
    for name, d in data.items():
        assert installed_path(folders, name).read_bytes() == d
    assert {e.state for e in events} >= {"queued", "downloading", "installed"}
    assert not any(installer.is_busy(name) for name in data)


async def test_unknown_name_starts_nothing(server, make):
    installer = make(ModelsCatalog({"a": entry(server, "a", blob("a"))}))
    with pytest.raises(NotFound, match="model 'nope' not found"):
        installer.start(["a", "nope"])
    assert installer.progress() == {} and not installer.is_busy("a")
    await asyncio.sleep(0.05)
    assert server.requests == []


async def test_a_model_without_url_is_refused_before_anything_starts(server, make):
    installer = make(ModelsCatalog({"a": entry(server, "a", blob("a")),
                                    "nourl": {"filename": "x.safetensors", "types": ["vae"]}}))
    with pytest.raises(ModelError, match="model nourl has no download URL"):
        installer.start(["a", "nourl"])
    assert installer.progress() == {}


async def test_installed_models_are_skipped(server, folders, make):
    data = blob("a")
    installer = make(ModelsCatalog({"a": entry(server, "a", data)}))
    installed_path(folders, "a").parent.mkdir(parents=True)
    installed_path(folders, "a").write_bytes(data)
    assert installer.start(["a"]) == []
    assert installer.progress() == {} and server.requests == []


async def test_at_most_max_concurrent_downloads_run_and_the_rest_are_queued(server, make):
    names = ["a", "b", "c", "d"]
    catalog = ModelsCatalog({n: entry(server, n, blob(n, 300_000), delay_s=0.01, chunk_bytes=16_384)
                             for n in names})
    installer = make(catalog, max_concurrent=2)
    installer.start(names)
    assert [p.state for p in installer.progress().values()] == ["queued"] * 4
    await eventually(lambda: sum(p.bytes_done > 0 for p in installer.progress().values()) == 2)
    states = sorted(p.state for p in installer.progress().values())
    assert states == ["downloading", "downloading", "queued", "queued"]
    ended = await installer.wait(names)
    assert [p.state for p in ended.values()] == ["installed"] * 4
    assert server.max_active == 2


async def test_starting_a_running_model_again_returns_it_without_a_second_download(server, make):
    installer = make(ModelsCatalog({"a": entry(server, "a", blob("a"), delay_s=0.01, chunk_bytes=16_384)}))
    assert installer.start(["a"]) == ["a"]
    assert installer.start(["a"]) == ["a"]  # queued
    await eventually(lambda: installer.progress()["a"].bytes_done > 0)
    assert installer.start(["a"]) == ["a"]  # downloading
    await installer.wait(["a"])
    assert server.ranges("/a.safetensors") == [None]


async def test_cancel_keeps_the_part_and_the_next_install_resumes_it(server, folders, make):
    data = blob("a", 1_000_000)
    installer = make(ModelsCatalog({"a": entry(server, "a", data, delay_s=0.01, chunk_bytes=16_384)}))
    target = installed_path(folders, "a")
    installer.start(["a"])
    await wait_for_bytes(part_file.part_path(target), 100_000)
    assert installer.cancel("a") is True
    ended = await installer.wait(["a"])
    assert ended["a"].state == "cancelled" and not installer.is_busy("a")
    kept = part_file.part_path(target).stat().st_size
    assert 100_000 <= kept < len(data) and not target.exists()
    assert installer.cancel("a") is False

    installer.start(["a"])
    assert (await installer.wait(["a"]))["a"].state == "installed"
    assert target.read_bytes() == data
    assert server.ranges("/a.safetensors") == [None, f"bytes={kept}-"]


async def test_cancel_of_a_queued_job_ends_it_cancelled(server, make):
    catalog = ModelsCatalog({n: entry(server, n, blob(n), delay_s=0.01, chunk_bytes=16_384) for n in ("a", "b")})
    installer = make(catalog, max_concurrent=1)
    installer.start(["a", "b"])
    assert installer.cancel("b") is True
    ended = await installer.wait(["a", "b"])
    assert (ended["a"].state, ended["b"].state) == ("installed", "cancelled")
    assert server.ranges("/b.safetensors") == []


async def test_a_failed_job_reports_the_error_text(server, make):
    catalog = ModelsCatalog({"a": entry(server, "a", blob("a"), status=404),
                             "b": entry(server, "b", blob("b"), corrupt=True)})
    installer = make(catalog)
    installer.start(["a", "b"])
    ended = await installer.wait()
    assert ended["a"].state == "failed" and "HTTP 404" in (ended["a"].error or "")
    assert ended["b"].state == "failed" and "sha256 mismatch" in (ended["b"].error or "")


async def test_aclose_cancels_running_downloads_and_keeps_their_parts(server, folders, make):
    installer = make(ModelsCatalog({"a": entry(server, "a", blob("a", 1_000_000), delay_s=0.01,
                                               chunk_bytes=16_384)}))
    installer.start(["a"])
    part = part_file.part_path(installed_path(folders, "a"))
    await wait_for_bytes(part, 50_000)
    await installer.aclose()
    assert installer.progress()["a"].state == "cancelled"
    assert part.stat().st_size >= 50_000 and not installed_path(folders, "a").exists()


async def test_a_broken_progress_callback_does_not_break_the_download(server, folders, make, caplog):
    def explode(progress):
        raise RuntimeError("listener bug")

    data = blob("a")
    installer = ModelInstaller(folders, ModelsCatalog({"a": entry(server, "a", data)}), POLICY, max_concurrent=1,
                               on_progress=explode)
    try:
        installer.start(["a"])
        assert (await installer.wait())["a"].state == "installed"
    finally:
        await installer.aclose()
    assert installed_path(folders, "a").read_bytes() == data
    assert "the progress callback failed" in caplog.text
