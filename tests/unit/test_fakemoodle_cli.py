"""``python -m tests.fakemoodle`` as a standalone program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def test_standalone_fake_moodle(tmp_path: Path) -> None:
    body_file, jobs_file = tmp_path / "body.json", tmp_path / "jobs.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakemoodle",
            "--port",
            "0",
            "--quiz-attempts",
            "2",
            "--backups",
            "quiz",
            "--body-file",
            str(body_file),
            "--jobs-file",
            str(jobs_file),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("fake Moodle listening on http://127.0.0.1:")
        base = first.split()[-1]
        deadline = time.monotonic() + 20
        while not body_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        body = json.loads(body_file.read_text())
        assert (
            body["moodle_base_url"] == base
            and len(body["task_archive_quiz_attempts"]["attemptids"]) == 2
        )
        ws = body["moodle_ws_url"]
        common = {"wstoken": body["wstoken"], "moodlewsrestformat": "json"}
        probe = requests.get(
            ws, params={**common, "wsfunction": "quiz_archiver_update_job_status"}, timeout=10
        )
        assert probe.json()["errorcode"] == "invalidparameter"
        update = {
            **common,
            "wsfunction": "quiz_archiver_update_job_status",
            "jobid": "cli-job",
            "status": "RUNNING",
        }
        assert requests.post(ws, data=update, timeout=10).json() == {"status": "E_UPDATE_FAILED"}
        answers = []
        while time.monotonic() < deadline:  # the first call with a job id inserts the row
            answers.append(requests.post(ws, data=update, timeout=10).json())
            if answers[-1] == {"status": "OK"}:
                break
            time.sleep(0.05)
        assert answers[-1] == {"status": "OK"}
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode == 0
    (summary,) = json.loads(jobs_file.read_text())
    assert summary["jobid"] == "cli-job" and summary["status"] == "RUNNING"
