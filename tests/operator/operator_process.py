"""Run the real operator (`moodle-archiver operator`) as a process against a test cluster.

Its stderr (JSON log lines) goes to a file the caller can search; `/metrics` and the
liveness endpoint listen on free loopback ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.gateway.server import REPO_ROOT, SOURCE_PATH, GatewayProcess, free_port

KWOK = "kwok.moodlearchiver.io"


class OperatorProcess(GatewayProcess):
    """Stops, logs and context management as the gateway's process helper."""

    def __init__(self, kubeconfig: Path, namespace: str, log_path: Path, **env: Any) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "MAO_JOBS_NAMESPACE": namespace,
            "MAO_LIVENESS_ENDPOINT": f"http://127.0.0.1:{self.liveness_port}/healthz",
            "MAO_METRICS_HOST": "127.0.0.1",
            "MAO_METRICS_PORT": str(self.metrics_port),
            "MAO_LOG_LEVEL": "DEBUG",
            "MAO_JOB_IMAGE": "moodle-archive-job:test",
            "MAO_HOUSEKEEPING_INTERVAL_SEC": "2",
            "MAO_RESYNC_INTERVAL_SEC": "5",
            "PYTHONPATH": SOURCE_PATH,
        }
        for name, value in env.items():
            self.env[name] = value if isinstance(value, str) else json.dumps(value)
        self.env.pop("KUBERNETES_SERVICE_HOST", None)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moodle_archive_job.cli", "operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"operator exited: {self.logs()[-3000:]}")
            if self.alive():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"operator not live: {self.logs()[-3000:]}")

    def alive(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup at all."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
