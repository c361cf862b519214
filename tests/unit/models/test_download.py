"""One model download against the local model server: resume, verification, faults, addresses and tokens."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import urllib.request
from collections import namedtuple
from pathlib import Path

import pytest

from tests.model_server import ModelServer, ServedFile, model_server_thread
from visionatrix.errors import Conflict, DownloadAuthRequired, DownloadError, DownloadRefused
from visionatrix.models import download, hosts, part_file
from visionatrix.models.catalog import CatalogModel
from visionatrix.models.hosts import DownloadPolicy

DATA = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB, every byte position distinguishable enough
LOCAL = DownloadPolicy(allow_hosts=frozenset({"127.0.0.1"}), retries=3, backoff_s=0.01, timeout_s=5)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model(url: str, data: bytes = DATA, *, sha: str | None = "", size: int | None = -1) -> CatalogModel:
    return CatalogModel(name="test-model", url=url, sha256=sha256(data) if sha == "" else sha,
                        filename="test.safetensors", folder="checkpoints", file_size=len(data) if size == -1 else size,
                        homepage=None, gated=False, types=("checkpoints",))


@pytest.fixture
async def server():
    async with ModelServer() as running:
        yield running


@pytest.fixture
def target(tmp_path) -> Path:
    return tmp_path / "checkpoints" / "test.safetensors"


async def fetch(source: CatalogModel, target: Path, policy: DownloadPolicy = LOCAL, events=None) -> None:
    async with hosts.open_session(policy) as session:
        await download.download_model(session, source, target, policy,
                                      on_progress=events.append if events is not None else None)


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir()) if target.parent.exists() else []


async def test_download_writes_the_verified_file_and_nothing_else(server, target):
    events = []
    await fetch(model(server.serve("/m", DATA)), target, events=events)
    assert target.read_bytes() == DATA
    assert leftovers(target) == ["test.safetensors"]
    assert server.ranges("/m") == [None]
    assert events[-1].state == "installed" and events[-1].bytes_done == len(DATA)


async def test_dropped_connection_is_resumed_with_a_range_from_the_bytes_received(server, target):
    await fetch(model(server.serve("/m", ServedFile(DATA, drop_after_bytes=300_000))), target)
    assert target.read_bytes() == DATA
    assert server.ranges("/m") == [None, "bytes=300000-"]


async def test_an_existing_part_is_hashed_and_resumed(server, target):
    target.parent.mkdir(parents=True)
    part_file.part_path(target).write_bytes(DATA[:500_000])
    await fetch(model(server.serve("/m", DATA)), target)
    assert target.read_bytes() == DATA
    assert server.ranges("/m") == ["bytes=500000-"]


async def test_server_without_range_support_restarts_the_part_from_zero(server, target):
    target.parent.mkdir(parents=True)
    part_file.part_path(target).write_bytes(b"x" * 500_000)  # would fail the hash if it were kept
    await fetch(model(server.serve("/m", ServedFile(DATA, no_range=True, drop_after_bytes=200_000))), target)
    assert target.read_bytes() == DATA
    assert server.ranges("/m") == ["bytes=500000-", "bytes=200000-"]
    assert leftovers(target) == ["test.safetensors"]


async def test_a_complete_part_is_verified_without_downloading_again(server, target):
    target.parent.mkdir(parents=True)
    part_file.part_path(target).write_bytes(DATA)
    await fetch(model(server.serve("/m", DATA)), target)
    assert target.read_bytes() == DATA and server.requests == []


async def test_unsatisfiable_range_on_a_complete_part_of_unknown_size_verifies_it(server, target):
    target.parent.mkdir(parents=True)
    part_file.part_path(target).write_bytes(DATA)
    await fetch(model(server.serve("/m", DATA), size=None), target)
    assert target.read_bytes() == DATA
    assert [r.status for r in server.requests] == [416]


async def test_a_part_longer_than_the_file_starts_over(server, target):
    target.parent.mkdir(parents=True)
    part_file.part_path(target).write_bytes(DATA + b"junk")
    await fetch(model(server.serve("/m", DATA)), target)
    assert target.read_bytes() == DATA and server.ranges("/m") == [None]


async def test_wrong_bytes_fail_the_sha256_and_leave_neither_file_nor_part(server, target):
    source = model(server.serve("/m", ServedFile(DATA, corrupt=True)))
    with pytest.raises(DownloadError, match=f"sha256 mismatch: expected {sha256(DATA)} got [0-9a-f]{{64}}"):
        await fetch(source, target)
    assert leftovers(target) == []


async def test_a_size_other_than_the_catalogs_is_refused_before_writing(server, target):
    with pytest.raises(DownloadError, match="the server has 1280000 bytes, the catalog says 1000"):
        await fetch(model(server.serve("/m", DATA), size=1000, sha=None), target)
    assert not target.exists()


async def test_not_found_is_a_clear_error_without_retries(server, target):
    with pytest.raises(DownloadError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/missing$"):
        await fetch(model(server.url("/missing")), target)
    assert len(server.requests) == 1 and leftovers(target) == []


async def test_server_errors_and_rate_limits_are_retried(server, target):
    server.serve("/m", ServedFile(DATA, status=503, status_times=2))
    server.serve("/r", ServedFile(DATA, status=429, status_times=1, retry_after_s=0))
    await fetch(model(server.url("/m")), target)
    await fetch(model(server.url("/r")), target.with_name("r.safetensors"))
    assert [r.status for r in server.requests] == [503, 503, 200, 429, 200]


async def test_persistent_server_errors_give_up_after_the_retries(server, target):
    with pytest.raises(DownloadError, match=r"HTTP 500 from .* \(gave up after 4 failed attempts\)"):
        await fetch(model(server.serve("/m", ServedFile(DATA, status=500))), target)
    assert len(server.requests) == LOCAL.retries + 1


async def test_not_enough_disk_space_fails_before_any_request(server, target, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DownloadError, match=r"not enough free disk space in .*: need 65\.2 MiB .* have 0\.0 MiB"):
        await fetch(model(server.serve("/m", DATA)), target)
    assert server.requests == []


async def test_an_installed_file_of_the_right_size_is_left_alone(server, target):
    target.parent.mkdir(parents=True)
    target.write_bytes(b"y" * len(DATA))
    await fetch(model(server.serve("/m", DATA)), target)
    assert target.read_bytes() == b"y" * len(DATA) and server.requests == []


async def test_a_download_already_locked_by_another_holder_is_a_conflict(server, target):
    target.parent.mkdir(parents=True)
    with part_file.part_lock("other", target):
        assert part_file.is_downloading(target)
        with pytest.raises(Conflict, match="already downloading in another process"):
            await fetch(model(server.serve("/m", DATA)), target)
    assert not part_file.is_downloading(target) and server.requests == []
    assert leftovers(target) == []


async def test_loopback_url_is_refused_when_not_named(server, target):
    with pytest.raises(DownloadRefused, match=r"127\.0\.0\.1 is a loopback address"):
        await fetch(model(server.serve("/m", DATA)), target, DownloadPolicy(allow_hosts=None))
    assert server.requests == []


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(server, target):
    url = server.serve("/m", DATA).replace("127.0.0.1", "localhost")
    with pytest.raises(DownloadRefused) as caught:
        await fetch(model(url), target, DownloadPolicy(allow_hosts=None))
    assert "localhost" in caught.value.reason and caught.value.name == "test-model"
    assert server.requests == []


async def test_redirect_to_a_host_off_the_list_is_refused(server, target):
    server.serve("/m", ServedFile(DATA, redirect_to="http://example.org/model.bin"))
    with pytest.raises(DownloadRefused, match=r"host example\.org is not in VIX_DOWNLOAD_ALLOW_HOSTS"):
        await fetch(model(server.url("/m")), target)


async def test_redirect_to_a_file_url_is_refused(server, target):
    server.serve("/m", ServedFile(DATA, redirect_to="file:///etc/passwd"))
    with pytest.raises(DownloadRefused, match="only http"):
        await fetch(model(server.url("/m")), target)
    assert leftovers(target) == []


async def test_redirects_on_allowed_hosts_are_followed(server, target):
    server.serve("/blob", DATA)
    server.serve("/m", ServedFile(DATA, redirect_to="/blob"))
    await fetch(model(server.url("/m")), target)
    assert target.read_bytes() == DATA and [r.path for r in server.requests] == ["/m", "/blob"]


async def test_endless_redirects_stop(server, target):
    server.serve("/m", ServedFile(DATA, redirect_to="/m"))
    with pytest.raises(DownloadError, match="more than 10 redirects"):
        await fetch(model(server.url("/m")), target)


def hf_policy(server: ModelServer, token: str | None) -> DownloadPolicy:
    """huggingface.co served by the local server (named, so its loopback address is allowed)."""
    names = frozenset({"huggingface.co", "cdn-lfs.huggingface.co", "127.0.0.1"})
    return DownloadPolicy(allow_hosts=names, hf_token=token, retries=1, backoff_s=0.01,
                          host_addresses={"huggingface.co": "127.0.0.1", "cdn-lfs.huggingface.co": "127.0.0.1"})


def hf_url(server: ModelServer, path: str, host: str = "huggingface.co") -> str:
    return server.url(path).replace("127.0.0.1", host)


async def test_gated_model_without_token_names_hf_token(server, target):
    server.serve("/gated", ServedFile(DATA, bearer_token="hf_good"))
    with pytest.raises(DownloadAuthRequired) as caught:
        await fetch(model(hf_url(server, "/gated")), target, hf_policy(server, None))
    assert caught.value.token_env == "HF_TOKEN" and caught.value.status == 401
    assert "set HF_TOKEN" in str(caught.value)
    assert server.requests[0].authorization is None


async def test_refused_token_says_it_was_refused_and_is_never_shown(server, target):
    server.serve("/gated", ServedFile(DATA, bearer_token="hf_good"))
    with pytest.raises(DownloadAuthRequired) as caught:
        await fetch(model(hf_url(server, "/gated")), target, hf_policy(server, "hf_wrong"))
    assert caught.value.status == 403 and "the token in HF_TOKEN was refused" in str(caught.value)
    assert "hf_wrong" not in str(caught.value)


async def test_token_is_sent_to_its_host_but_not_across_a_redirect_even_to_a_subdomain(server, target):
    server.serve("/gated", ServedFile(DATA, bearer_token="hf_good",
                                      redirect_to=hf_url(server, "/cdn/blob", "cdn-lfs.huggingface.co")))
    server.serve("/cdn/blob", DATA)
    await fetch(model(hf_url(server, "/gated")), target, hf_policy(server, "hf_good"))
    assert target.read_bytes() == DATA
    assert [(r.path, r.authorization) for r in server.requests] == [("/gated", "Bearer hf_good"), ("/cdn/blob", None)]


async def test_auth_failure_from_a_host_without_tokens_says_so(server, target):
    server.serve("/gated", ServedFile(DATA, bearer_token="x"))
    with pytest.raises(DownloadError, match=r"refused access \(no token is sent to 127\.0\.0\.1"):
        await fetch(model(server.url("/gated")), target)


async def test_progress_reports_speed_and_eta_at_most_ten_times_a_second(server, target):
    events = []
    server.serve("/slow", ServedFile(DATA, delay_s=0.02, chunk_bytes=32 * 1024))  # ~40 chunks, ~0.8 s
    started = time.monotonic()
    await fetch(model(server.url("/slow")), target, events=events)
    elapsed = time.monotonic() - started
    running = [e for e in events if e.state == "downloading" and e.bytes_done > 0]
    assert len(running) >= 3
    assert len(events) <= elapsed / download.PROGRESS_INTERVAL_S + 4  # at most 10/s plus the forced state changes
    assert all(e.speed_bps > 0 and e.eta_s is not None and e.bytes_total == len(DATA) for e in running)
    assert [e.bytes_done for e in running] == sorted(e.bytes_done for e in running)
    middle = running[len(running) // 2]
    assert middle.eta_s == pytest.approx((len(DATA) - middle.bytes_done) / middle.speed_bps)
    assert events[-1].event("w1") == {"type": "model_progress", "name": "test-model", "state": "installed",
                                      "bytes_done": len(DATA), "bytes_total": len(DATA),
                                      "speed_bps": events[-1].speed_bps, "eta_s": 0.0, "error": None,
                                      "worker_id": "w1"}


async def test_a_stale_lock_file_without_a_holder_does_not_block(server, target):
    target.parent.mkdir(parents=True)
    part_file.lock_path(target).write_bytes(b"")  # left by a process that was killed
    await fetch(model(server.serve("/m", DATA)), target)
    assert target.read_bytes() == DATA and not os.path.exists(part_file.lock_path(target))


def test_model_server_in_a_thread_serves_whole_files_and_ranges_to_blocking_clients():
    with model_server_thread({"/m": DATA}) as running:
        with urllib.request.urlopen(running.url("/m")) as whole:
            assert whole.read() == DATA
        ranged = urllib.request.Request(running.url("/m"), headers={"Range": "bytes=1000-"})
        with urllib.request.urlopen(ranged) as part:
            assert part.status == 206 and part.read() == DATA[1000:]
            assert part.headers["Content-Range"] == f"bytes 1000-{len(DATA) - 1}/{len(DATA)}"
    assert running.ranges("/m") == [None, "bytes=1000-"]
