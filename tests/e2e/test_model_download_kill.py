"""kill -9 of a process in the middle of a model download: the next install resumes its part with a Range request,
is not blocked by the dead process's lock, and ends with the right file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.model_server import ModelServer, ServedFile
from visionatrix.models import download, hosts, part_file
from visionatrix.models.catalog import CatalogModel

ROOT = Path(__file__).resolve().parents[2]
DATA = hashlib.sha256(b"kill -9").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB
POLICY = hosts.DownloadPolicy(allow_hosts=frozenset({"127.0.0.1"}), chunk_bytes=16 * 1024, backoff_s=0.01)

DOWNLOADER = """
import asyncio, sys
from pathlib import Path
from visionatrix.models import download, hosts, part_file
from visionatrix.models.catalog import CatalogModel

url, sha256, size, target = sys.argv[1:5]
policy = hosts.DownloadPolicy(allow_hosts=frozenset({"127.0.0.1"}), chunk_bytes=16 * 1024)
model = CatalogModel("killed", url, sha256, Path(target).name, "checkpoints", int(size), None, False, ())

async def main():
    async with hosts.open_session(policy) as session:
        await download.download_model(session, model, Path(target), policy)

asyncio.run(main())
"""


def catalog_model(url: str) -> CatalogModel:
    return CatalogModel("killed", url, hashlib.sha256(DATA).hexdigest(), "big.safetensors", "checkpoints",
                        len(DATA), None, False, ())


async def until(condition, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the downloader exited early with {process.returncode}")
        await asyncio.sleep(0.01)
    raise AssertionError("the downloader never wrote enough bytes")


async def test_install_after_kill_9_resumes_the_part_with_a_range_request(tmp_path):
    target = tmp_path / "models" / "checkpoints" / "big.safetensors"
    part = part_file.part_path(target)
    async with ModelServer({"/big": ServedFile(DATA, delay_s=0.02, chunk_bytes=32 * 1024)}) as server:
        url = server.url("/big")
        process = subprocess.Popen(
            [sys.executable, "-c", DOWNLOADER, url, hashlib.sha256(DATA).hexdigest(), str(len(DATA)), str(target)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE)
        try:
            await until(lambda: part.exists() and part.stat().st_size >= 256 * 1024, process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert process.stderr is not None
            process.stderr.close()
        assert process.returncode == -signal.SIGKILL
        kept = part.stat().st_size
        assert 256 * 1024 <= kept < len(DATA) and not target.exists()
        assert part_file.lock_path(target).exists() and not part_file.is_downloading(target)

        server.serve("/big", DATA)  # full speed for the resumed install
        async with hosts.open_session(POLICY) as session:
            await download.download_model(session, catalog_model(url), target, POLICY)

    assert server.ranges("/big") == [None, f"bytes={kept}-"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(DATA).hexdigest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.safetensors"]
