"""Real `moodle-archiver run-job` processes against the fake Moodle, for kill/resume and shard
tests: started in their own session so the whole tree (Chromium) can be cleaned up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.fakemoodle import FakeMoodle, Job

REPO = Path(__file__).resolve().parents[2]
REPORT = "quiz_archiver_generate_attempt_report"


# This checkout's packages first (not the venv's editable install of another checkout).
SOURCE_PATH = os.pathsep.join(str(REPO / p) for p in ("job-image", "operator", "."))


def runner_env(work: Path, concurrency: int = 2, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": SOURCE_PATH,
        "QUIZ_ARCHIVER_WORK_DIR": str(work),
        "QUIZ_ARCHIVER_PDFA_CONVERSION": "false",
        "QUIZ_ARCHIVER_MOODLE_RETRIES": "1",
        "QUIZ_ARCHIVER_MOODLE_RETRY_BACKOFF_SEC": "0.05",
        "QUIZ_ARCHIVER_STATUS_REPORTING_INTERVAL_SEC": "0",
        "QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY": str(concurrency),
    }
    env.pop("MAO_ARCHIVEJOB_NAME", None)
    env.update(extra)
    return env


@dataclass
class CliJob:
    """One registered job and the command line that runs it."""

    moodle: FakeMoodle
    job: Job
    jobid: str
    request: Path
    work: Path

    @classmethod
    def create(cls, moodle: FakeMoodle, job: Job, tmp: Path) -> CliJob:
        jobid = str(uuid.uuid4())
        moodle.register_job(job, jobid)
        tmp.mkdir(parents=True, exist_ok=True)
        request = tmp / f"request-{jobid}.json"
        request.write_text(json.dumps(job.request_body))
        work = tmp / "work"
        work.mkdir(exist_ok=True)
        return cls(moodle, job, jobid, request, work)

    @property
    def jobdir(self) -> Path:
        return self.work / f"job-{self.jobid}"

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "moodle_archive_job.cli", "run-job", "--request",
             str(self.request), "--job-id", self.jobid, "--log-format", "json", *args],
            env=env or runner_env(self.work), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )

    def report_calls(self) -> Counter[int]:
        return Counter(int(c.params["attemptid"]) for c in self.moodle.calls_for(self.jobid)
                       if c.wsfunction == REPORT)

    def calls(self, name: str) -> int:
        return sum(1 for c in self.moodle.calls_for(self.jobid)
                   if (c.wsfunction or c.endpoint) == name)

    def manifest_lines(self) -> int:
        root = self.jobdir / "checkpoints"
        return sum(p.read_bytes().count(b"\n") for p in root.glob("manifest-*.jsonl"))


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the runner process itself, then whatever it left behind (Chromium)."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str],
             timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"runner exited early ({proc.returncode}): "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            kill_tree(proc)
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err
