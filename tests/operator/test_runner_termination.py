"""`run-job` stopped by SIGTERM: it tells Moodle FAILED only when its ArchiveJob is gone
(deleted: nobody else holds the token), not when it still exists (an eviction or the
deadline: a new pod or the operator carries on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_operator.archivejob import new_job_id
from tests.fakemoodle import FakeMoodle
from tests.operator.test_archivejob_status import FakeApiServer


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.server.shutdown()


def run_and_terminate(moodle: FakeMoodle, tmp: Path, env: dict[str, str]) -> tuple[str, int, str]:
    moodle_job = moodle.create_job(moodle.create_quiz(attempts=2), protocol="quiz_archiver")
    parsed = parse_archive_request(
        moodle_job.request_body, detect_protocol(moodle_job.request_body)
    )
    job_id = new_job_id()
    moodle.register_job(moodle_job, job_id)
    (tmp / "task.json").write_text(parsed.task.model_dump_json())
    (tmp / "token").write_text(parsed.token.get_secret_value())
    (tmp / "sa-token").write_text("service-account-token")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moodle-archiver"), "run-job",
         "--task", str(tmp / "task.json"), "--token-file", str(tmp / "token"),
         "--job-id", job_id, "--log-format", "json"],
        env={**os.environ, "QUIZ_ARCHIVER_PDFA_CONVERSION": "false", **env},
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while moodle.job(job_id).status_name != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    return job_id, proc.returncode, stderr


@pytest.mark.parametrize(("archivejob_answer", "told"), [(404, "FAILED"), (200, "RUNNING")])
def test_sigterm_tells_moodle_failed_only_when_the_archivejob_is_gone(
    api: FakeApiServer, tmp_path: Path, archivejob_answer: int, told: str
) -> None:
    api.get_status = archivejob_answer
    with FakeMoodle() as moodle:
        moodle.faults.set_latency("report", 30)  # the runner waits on Moodle when stopped
        env = {
            "MAO_ARCHIVEJOB_NAME": "archive-x",
            "MAO_ARCHIVEJOB_NAMESPACE": "jobs",
            "MAO_KUBE_SERVER": api.url,
            "MAO_KUBE_TOKEN_FILE": str(tmp_path / "sa-token"),
        }
        job_id, code, stderr = run_and_terminate(moodle, tmp_path, env)
        assert code == 143, stderr[-2000:]
        assert moodle.job(job_id).status_name == told
    assert "stopped" in stderr
