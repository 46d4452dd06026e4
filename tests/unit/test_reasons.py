"""Reasons an admin reads: one line, a few hundred characters, the cause named."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from moodle_archive_job.archivejob_status import status_patch
from moodle_archive_job.attempt_outcomes import (
    MAX_WARNINGS,
    AttemptFailed,
    AttemptOutcomes,
    as_attempt_failure,
)
from moodle_archive_job.logs import register_secret, unregister_secret
from moodle_archive_job.moodle_client import MoodleClient, MoodleUnreachable
from moodle_archive_job.progress import Phase, ProgressEvent
from moodle_archive_job.reasons import MAX_REASON, condense, one_line
from moodle_archive_job.render import IncompletePage
from moodle_archive_job.task import MoodleEndpoints
from moodle_archive_job.termination import write_termination_message
from moodle_archive_operator.archivejob import ArchiveJob
from moodle_archive_operator.controller.decide import decide
from moodle_archive_operator.controller.observe import observe
from moodle_archive_operator.controller.settings import OperatorSettings
from tests.operator.objects import T0, archivejob, job, pod

TOKEN = "0123456789abcdef0123456789abcdef"


def log_tail(error_line: str | None = None, records: int = 12) -> str:
    """What FallbackToLogsOnError puts into a termination message: the runner's JSON log."""
    lines = [
        json.dumps({"time": "2026-12-03T07:00:00.000+00:00", "level": "INFO",
                    "logger": "moodle_archive_job.progress", "message": f"attempt {i} of 40",
                    "phase": "Running", "attempts_done": i, "attempts_total": 40})
        for i in range(records)
    ]  # fmt: skip
    lines.append(json.dumps({
        "time": "2026-12-03T07:00:01.000+00:00", "level": "ERROR",
        "logger": "moodle_archive_job.pipeline", "message": "job failed",
        "error": "attempt 7: stylesheet https://moodle.example/theme/styles.php/boost/1/all "
                 "timed out after 30 s",
    }))  # fmt: skip
    if error_line is not None:
        lines.append(error_line)
    return "\n".join(lines)


def test_one_line_collapses_clips_and_redacts() -> None:
    register_secret(TOKEN)
    try:
        text = f"first\nsecond\t third https://m.example/f.php?token={TOKEN} " + "x" * 1000
        line = one_line(text)
    finally:
        unregister_secret(TOKEN)
    assert "\n" not in line and "\t" not in line
    assert len(line) == MAX_REASON and line.endswith("...")
    assert line.startswith("first second third https://m.example/f.php?token=*** x")
    assert TOKEN not in line
    assert one_line("short") == "short"


def test_condense_prefers_the_runners_own_last_line() -> None:
    tail = log_tail("moodle-archiver: Failed: attempt 7: stylesheet https://m/x.css timed out")
    assert len(tail) > 2000
    assert condense(tail) == "Failed: attempt 7: stylesheet https://m/x.css timed out"


def test_condense_takes_the_last_error_record_of_a_json_log() -> None:
    assert condense(log_tail()) == (
        "job failed: attempt 7: stylesheet https://moodle.example/theme/styles.php/boost/1/all "
        "timed out after 30 s"
    )


def test_condense_takes_a_tracebacks_last_line() -> None:
    tail = log_tail(records=3).replace('"ERROR"', '"INFO"') + (
        "\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "MemoryError: cannot allocate"
    )
    assert condense(tail) == "MemoryError: cannot allocate"
    assert condense("") == ""
    assert condense("one plain line") == "one plain line"


def test_failed_pods_log_tail_becomes_a_one_line_condition_and_the_event_keeps_more() -> None:
    aj = archivejob()
    aj["status"] = {"phase": "Running"}
    failed = pod("Failed", exit_code=1)
    failed["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = log_tail()
    obs = observe(job(aj, "Failed", "BackoffLimitExceeded"), [failed], [])
    settings = OperatorSettings(_env_file=None)  # type: ignore[call-arg]

    decision = decide(aj, obs, True, T0 + timedelta(seconds=60), settings)

    assert decision.final is not None
    status: dict[str, Any] = {**aj["status"], **decision.patch}
    messages = [status["message"], *(c["message"] for c in status["conditions"])]
    for message in messages:
        assert "\n" not in message and len(message) <= MAX_REASON
    assert status["message"] == (
        "the runner exited with code 1: job failed: attempt 7: stylesheet "
        "https://moodle.example/theme/styles.php/boost/1/all timed out after 30 s"
    )
    (event,) = decision.events
    assert "the pod said:" in event.message and len(event.message) > len(status["message"])
    ArchiveJob.model_validate({**aj, "status": status})


def test_status_patch_lists_failed_attempts_and_warnings_in_one_line_each() -> None:
    event = ProgressEvent(
        phase=Phase.FAILED, message="attempt 7: no PDF/A:\n" + "y" * 2000,
        failed_attempts=[7], warnings=["attempt 3: kept as plain PDF,\nnot PDF/A: because"],
    )  # fmt: skip
    status = status_patch(event)["status"]
    assert status["failedAttempts"] == [7]
    assert status["warnings"] == ["attempt 3: kept as plain PDF, not PDF/A: because"]
    assert len(status["message"]) == MAX_REASON and "\n" not in status["message"]
    assert "failedAttempts" not in status_patch(ProgressEvent(phase=Phase.RUNNING))["status"]


def test_warnings_are_capped_with_a_count_of_the_rest() -> None:
    outcomes = AttemptOutcomes()
    for i in range(MAX_WARNINGS + 10):
        outcomes.warn(f"attempt {i}: kept as plain PDF")
    outcomes.warn("attempt 0: kept as plain PDF")  # a repeat is not counted again
    assert len(outcomes.warnings) == MAX_WARNINGS
    assert outcomes.warnings[-2] == f"attempt {MAX_WARNINGS - 2}: kept as plain PDF"
    assert outcomes.warnings[-1] == "... and 11 more warnings (see the pod log)"


def test_render_errors_are_named_after_their_attempt() -> None:
    failure = as_attempt_failure(123, IncompletePage(["stylesheet https://m/s.css timed out "
                                                      "after 30 s"]))  # fmt: skip
    assert isinstance(failure, AttemptFailed)
    assert str(failure) == "attempt 123: stylesheet https://m/s.css timed out after 30 s"
    unreachable = MoodleUnreachable("Moodle did not answer x for 5 min (connection refused)")
    assert as_attempt_failure(123, unreachable) is unreachable


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_moodle_unreachable_names_the_call_how_long_and_why() -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    endpoints = MoodleEndpoints(base_url=base, ws_url=f"{base}/webservice/rest/server.php",
                                upload_url=f"{base}/webservice/upload.php")  # fmt: skip
    clock = {"now": 0.0}
    client = MoodleClient(endpoints, TOKEN, retries=3, backoff_sec=100,
                          sleep=lambda s: clock.__setitem__("now", clock["now"] + s))  # fmt: skip
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("moodle_archive_job.moodle_client.time.monotonic", lambda: clock["now"])
            with pytest.raises(MoodleUnreachable) as raised:
                client.call("quiz_archiver_generate_attempt_report", {"attemptid": 1})
    finally:
        client.close()
    assert str(raised.value) == (
        "Moodle did not answer quiz_archiver_generate_attempt_report for 12 min "
        "(connection refused)"
    )


def test_termination_message_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "termination-log"
    monkeypatch.setenv("MAO_TERMINATION_LOG", str(target))
    write_termination_message("not written: the file does not exist")
    assert not target.exists()
    target.touch()
    write_termination_message("Failed: attempt 7:\nno PDF/A " + "z" * 1000)
    text = target.read_text()
    assert text.count("\n") == 1 and len(text.strip()) == MAX_REASON


def test_the_runner_ends_with_its_reason_as_termination_message(tmp_path: Path) -> None:
    target = tmp_path / "termination-log"
    target.touch()  # the kubelet creates it in a container
    env = {**os.environ, "MAO_TERMINATION_LOG": str(target),
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "moodle_archive_job.cli", "run-job", "--task",
         str(tmp_path / "missing.json"), "--token-file", str(tmp_path / "t"),
         "--job-id", "0b6ffbbc-2a5e-4a53-9d3c-5c0bd4a7f3a4", "--log-format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    missing = tmp_path / "missing.json"
    assert target.read_text() == f"cannot read {missing}: No such file or directory\n"
    assert done.stderr.strip().splitlines()[-1] == "moodle-archiver: " + target.read_text().strip()
