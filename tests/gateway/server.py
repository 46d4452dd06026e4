"""Run the real gateway (`python -m moodle_archive_operator.gateway`) as a process.

Used by the cluster tests and by bench/gateway_bench.py. Its stderr (JSON log lines,
uvicorn access log included) goes to a file the caller can search.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
# This checkout's packages ahead of the venv's (an editable install of another checkout,
# such as a git worktree's main, would otherwise be what the process runs).
SOURCE_PATH = os.pathsep.join(
    str(REPO_ROOT / part) for part in ("job-image", "operator", "")
).rstrip(os.pathsep)


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        allowed_moodle_urls: str,
        log_path: Path,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "MAO_JOBS_NAMESPACE": namespace,
            "MAO_ALLOWED_MOODLE_URLS": allowed_moodle_urls,
            "MAO_GATEWAY_HOST": "127.0.0.1",
            "MAO_GATEWAY_PORT": str(self.port),
            "MAO_LOG_LEVEL": "DEBUG",
            "PYTHONPATH": SOURCE_PATH,
            **env,
        }
        self.env.pop("KUBERNETES_SERVICE_HOST", None)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> GatewayProcess:
        if self._proc is not None:
            return self  # already started (e.g. started, then used in a `with`)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moodle_archive_operator.gateway"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                # Die with the test or benchmark process even if it is killed.
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the gateway is not running")
        return self._proc.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
