"""A final status the runner cannot deliver is reported as pending (for the operator to
redeliver), never as told; a processing call without an answer leaves what it takes to
redeliver it, and a redelivered processing call succeeds at most once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from moodle_archive_job.final_status import PendingArtifact, Verdict, deliver, verdict
from moodle_archive_job.moodle_api import JobStatus, api_for
from moodle_archive_job.moodle_client import MoodleClient
from moodle_archive_job.progress import Phase
from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from tests.fakemoodle import FakeMoodle, Job
from tests.runner.conftest import RunResult, fast_settings, run_fake_job

pytestmark = pytest.mark.browser

PROCESS = "quiz_archiver_process_uploaded_artifact"


def redeliver(moodle: FakeMoodle, job: Job, jobid: str, artifact: PendingArtifact) -> str:
    """What the operator does with the pending artifact and the token Secret."""
    parsed = parse_archive_request(job.request_body, detect_protocol(job.request_body))
    client = MoodleClient(parsed.task.moodle, parsed.token, retries=0)
    try:
        return deliver(api_for(parsed.task, client, jobid), JobStatus.FINISHED, artifact)
    finally:
        client.close()


def last_pending(result: RunResult) -> tuple[str | None, str | None, PendingArtifact | None]:
    event = result.sink.events[-1]
    return event.moodle_status, event.pending_moodle_status, event.pending_artifact


def test_failed_that_cannot_be_delivered_is_left_pending(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1))
    moodle.faults.down("refuse")
    try:
        result = run_fake_job(moodle, job, fast_settings(tmp_path))
    finally:
        moodle.faults.up()
    assert result.outcome.phase is Phase.FAILED
    assert last_pending(result) == (None, "FAILED", None)
    assert job.status == "AWAITING_PROCESSING" and job.token_valid


def test_failed_that_was_delivered_is_not_pending(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1), backups=("quiz",),
                            backup_fails=True)  # fmt: skip
    result = run_fake_job(moodle, job, fast_settings(tmp_path))
    assert result.outcome.phase is Phase.FAILED
    assert last_pending(result) == ("FAILED", None, None)
    assert job.status == "FAILED"


def test_processing_refused_by_server_errors_is_redelivered_once(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=2, with_formulas=False), backups=())
    moodle.faults.fail_next(PROCESS, n=10, status=503)
    result = run_fake_job(moodle, job, fast_settings(tmp_path, moodle_retries=1))
    moodle.faults.clear()
    assert result.outcome.phase is Phase.FAILED
    told, pending, artifact = last_pending(result)
    assert (told, pending) == (None, "FINISHED") and artifact is not None
    assert "uploaded" in result.outcome.message
    assert job.status == "FINALIZING" and job.token_valid  # FAILED was not sent
    answer = redeliver(moodle, job, result.jobid, artifact)
    assert (answer, verdict(answer)) == ("OK", Verdict.DELIVERED)
    assert job.status == "FINISHED" and job.artifact is not None
    again = redeliver(moodle, job, result.jobid, artifact)
    assert verdict(again) is Verdict.ALREADY_FINAL, again
    assert [s for s, _ in job.statusextras_history].count("FINISHED") == 1


def test_processing_whose_answer_was_lost_is_not_processed_twice(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False), backups=())
    moodle.faults.set_latency(PROCESS, 2.0)  # Moodle processes it after the runner gave up
    settings = fast_settings(tmp_path, moodle_transfer_timeout_sec=0.5)
    result = run_fake_job(moodle, job, settings)
    assert result.outcome.phase is Phase.FAILED
    _, pending, artifact = last_pending(result)
    assert pending == "FINISHED" and artifact is not None
    deadline = time.monotonic() + 10
    while job.status != "FINISHED" and time.monotonic() < deadline:
        time.sleep(0.05)
    moodle.faults.clear()
    assert job.status == "FINISHED"
    answer = redeliver(moodle, job, result.jobid, artifact)
    assert verdict(answer) is Verdict.ALREADY_FINAL, answer
    assert [s for s, _ in job.statusextras_history].count("FINISHED") == 1


def test_processing_answered_by_a_proxy_error_after_moodle_did_it_is_not_sent_again(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    """A 504 may come while PHP goes on: the call is not repeated (it would find the token
    gone and fail a job whose archive Moodle has); the operator redelivers it instead."""
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False), backups=())
    moodle.faults.lose_answer_next(PROCESS, status=504)
    result = run_fake_job(moodle, job, fast_settings(tmp_path, moodle_retries=3))
    assert result.outcome.phase is Phase.FAILED
    told, pending, artifact = last_pending(result)
    assert (told, pending) == (None, "FINISHED") and artifact is not None
    assert job.status == "FINISHED" and job.artifact is not None
    assert [c.fault for c in moodle.ws_calls(PROCESS)] == ["lost-answer:504"]
    answer = redeliver(moodle, job, result.jobid, artifact)
    assert verdict(answer) is Verdict.ALREADY_FINAL, answer
