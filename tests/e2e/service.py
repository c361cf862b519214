"""Start ``python -m visionatrix run`` as a real process on a free port, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> int:
    """Send ``sig`` and wait ``timeout_s`` for the exit (then kill); the exit status."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


class Service:
    """A running service process; ``url`` is its base URL."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "service.log"
        environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIX_PORT": str(self.port),
                       "VIX_PROGRESS_INTERVAL_S": "0.1", **(env or {})}
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "visionatrix", "run"], cwd=workdir, env=environment,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/vapi/health",
                                                                       timeout=1) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"service did not answer within {timeout_s} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        code = stop_process(self.process, sig, timeout_s)
        self._log.close()
        return code

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_service(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Service]:
    service = Service(workdir, env)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


def env_without_vix() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VIX_")}
