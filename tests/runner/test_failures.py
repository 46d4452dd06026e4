"""Every way a job can fail ends with a clear message and the right status at Moodle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from moodle_archive_job.progress import Phase
from tests.fakemoodle import FakeMoodle
from tests.runner.conftest import fast_settings, run_fake_job
from tests.runner.procs import SOURCE_PATH

pytestmark = pytest.mark.browser


def sent_statuses(moodle: FakeMoodle, jobid: str) -> list[str]:
    return [str(s) for s, _ in moodle.job(jobid).statusextras_history]


def test_wrong_token_fails_without_touching_the_job(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1))
    result = run_fake_job(moodle, job, fast_settings(tmp_path), token="f" * 32)
    assert result.outcome.phase is Phase.FAILED
    assert "invalidtoken" in result.outcome.message
    assert job.status == "AWAITING_PROCESSING" and job.artifact is None
    assert all(not c.token_valid for c in moodle.calls if c.endpoint == "rest")


def test_moodle_down_fails_with_a_clear_reason(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1))
    moodle.faults.down("refuse")
    result = run_fake_job(moodle, job, fast_settings(tmp_path))
    moodle.faults.up()
    assert result.outcome.phase is Phase.FAILED
    assert result.outcome.message == (
        "Moodle did not answer quiz_archiver_generate_attempt_report for 0.1 s (connection refused)"
    )
    assert job.status == "AWAITING_PROCESSING"  # nobody could tell it anything


def test_transient_server_errors_are_retried(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=2, with_formulas=False))
    moodle.faults.fail_next("report", n=2, status=503)
    result = run_fake_job(moodle, job, fast_settings(tmp_path, moodle_retries=3))
    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    assert job.status == "FINISHED"
    assert [c.http_status for c in moodle.ws_calls("quiz_archiver_generate_attempt_report")
            ].count(503) == 2


def test_moodle_slower_than_the_read_timeout(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False))
    moodle.faults.set_latency("report", 3.0)
    settings = fast_settings(tmp_path, moodle_read_timeout_sec=0.5, moodle_retries=1)
    result = run_fake_job(moodle, job, settings)
    assert result.outcome.phase is Phase.FAILED
    assert result.outcome.message.startswith(
        "Moodle did not answer quiz_archiver_generate_attempt_report for "
    )
    assert result.outcome.message.endswith(" (no answer within 0.5 s)")
    assert job.status == "FAILED" and not job.token_valid


def test_report_that_never_becomes_ready(moodle: FakeMoodle, tmp_path: Path) -> None:
    moodle.faults.mathjax = "never_ready"
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=True))
    result = run_fake_job(moodle, job, fast_settings(tmp_path,
                                                     wait_for_ready_signal_timeout_sec=2))
    assert result.outcome.phase is Phase.FAILED
    assert "ready" in result.outcome.message.lower()
    assert job.status == "FAILED"


def test_missing_chromium_fails_naming_the_path_and_the_setting(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False))
    missing = tmp_path / "no-chromium"
    result = run_fake_job(moodle, job, fast_settings(tmp_path, chromium_path=str(missing)))
    assert result.outcome.phase is Phase.FAILED
    assert result.outcome.message == (
        f"Chromium not found at {missing}: install Debian's "
        "chromium-headless-shell or set MOODLE_ARCHIVER_CHROMIUM_PATH / "
        "QUIZ_ARCHIVER_CHROMIUM_PATH to the Chromium executable"
    )
    assert job.status == "FAILED"


def test_oversized_attachment(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, attachments_per_attempt=1,
                                               with_formulas=False))
    settings = fast_settings(tmp_path, question_attachment_download_max_filesize_bytes=10)
    result = run_fake_job(moodle, job, settings)
    assert result.outcome.phase is Phase.FAILED
    assert "exceeds the limit of 10 bytes" in result.outcome.message
    assert job.status == "FAILED"


def test_attachment_checksum_mismatch(moodle: FakeMoodle, tmp_path: Path) -> None:
    moodle.faults.attachment_bad_hash = True
    job = moodle.create_job(moodle.create_quiz(attempts=1, attachments_per_attempt=1,
                                               with_formulas=False))
    result = run_fake_job(moodle, job, fast_settings(tmp_path))
    assert result.outcome.phase is Phase.FAILED
    assert "SHA-1 mismatch" in result.outcome.message
    assert job.status == "FAILED"


def test_failed_backup_fails_fast(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False),
                            backups=("quiz",), backup_fails=True)
    result = run_fake_job(moodle, job, fast_settings(tmp_path, backup_status_retry_sec=30))
    assert result.outcome.phase is Phase.FAILED
    assert "failed" in result.outcome.message and ".mbz" in result.outcome.message
    assert len(moodle.ws_calls("quiz_archiver_get_backup_status")) == 1
    assert job.status == "FAILED"


def test_pending_backup_sends_waiting_for_backup_once(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False),
                            backups=("quiz",), backup_ready_after=3600, timeout_min=600)

    def cron_runs_after_first_poll() -> None:
        while not moodle.ws_calls("quiz_archiver_get_backup_status"):
            time.sleep(0.05)
        moodle.advance_time(3601)

    cron = threading.Thread(target=cron_runs_after_first_poll, daemon=True)
    cron.start()
    result = run_fake_job(moodle, job, fast_settings(tmp_path, backup_status_retry_sec=0.3))
    cron.join(timeout=5)
    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    statuses = sent_statuses(moodle, result.jobid)
    assert statuses.count("WAITING_FOR_BACKUP") == 1
    assert statuses.index("WAITING_FOR_BACKUP") < statuses.index("FINALIZING")
    assert len(moodle.ws_calls("quiz_archiver_get_backup_status")) >= 2


def test_upload_rejected_by_moodle(moodle: FakeMoodle, tmp_path: Path) -> None:
    moodle.faults.max_upload_bytes = 1000
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False))
    result = run_fake_job(moodle, job, fast_settings(tmp_path))
    assert result.outcome.phase is Phase.FAILED
    assert "fileoversized" in result.outcome.message
    assert job.status == "FAILED" and job.artifact is None


def test_deadline_reached_mid_run_sends_timeout(moodle: FakeMoodle, tmp_path: Path) -> None:
    moodle.faults.set_latency("report", 1.0)
    job = moodle.create_job(moodle.create_quiz(attempts=10, with_formulas=False))
    # 10 attempts at 1 s each, one at a time, cannot finish in 4 s.
    settings = fast_settings(tmp_path, request_timeout_sec=4, attempt_concurrency=1)
    result = run_fake_job(moodle, job, settings)
    assert result.outcome.phase is Phase.TIMED_OUT
    assert "runtime limit of 4 s" in result.outcome.message
    assert result.outcome.attempts_done < 10
    assert job.status == "TIMEOUT" and not job.token_valid
    statuses = sent_statuses(moodle, result.jobid)
    assert statuses[0] == "RUNNING" and statuses[-1] == "TIMEOUT"  # stopped mid-run


def test_job_row_inserted_late_is_waited_for(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False),
                            auto_register_after=1.5)
    result = run_fake_job(moodle, job, fast_settings(tmp_path), register=False)
    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    assert job.status == "FINISHED"
    early = moodle.ws_calls("quiz_archiver_update_job_status")[0]
    assert early.response_status == "E_UPDATE_FAILED"


def test_orphaned_job_fails_fast(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False))
    result = run_fake_job(moodle, job, fast_settings(tmp_path, job_not_found_grace_sec=1.5),
                          register=False)
    assert result.outcome.phase is Phase.FAILED
    assert "never registered" in result.outcome.message
    assert not moodle.ws_calls("quiz_archiver_generate_attempt_report")


def _cli(args: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUIZ_ARCHIVER_WORK_DIR": str(work), "QUIZ_ARCHIVER_PDFA_CONVERSION":
           "false", "QUIZ_ARCHIVER_MOODLE_RETRIES": "0", "PYTHONPATH": SOURCE_PATH}
    return subprocess.run(
        [sys.executable, "-m", "moodle_archive_job.cli", "run-job", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )


@pytest.mark.parametrize(
    "archive_filename",
    ["../../etc/cron.d/evil", "nul\0byte", "dots.in.name", "..", "a/b"],
)
def test_hostile_names_rejected_before_any_file_is_written(
    moodle: FakeMoodle, tmp_path: Path, archive_filename: str
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1))
    body = dict(job.request_body, archive_filename=archive_filename)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    work = tmp_path / "work"
    work.mkdir()
    moodle.clear_calls()
    done = _cli(["--request", str(request), "--job-id", str(uuid.uuid4())], work)
    assert done.returncode == 2
    assert "Archive filename" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(work.iterdir()) == []
    assert moodle.calls == []
    assert job.token not in done.stderr + done.stdout


def test_cli_failure_is_one_line_without_the_token(moodle: FakeMoodle, tmp_path: Path) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1, with_formulas=False),
                            backups=("quiz",), backup_fails=True)
    jobid = str(uuid.uuid4())
    moodle.register_job(job, jobid)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(job.request_body))
    done = _cli(["--request", str(request), "--job-id", jobid, "--log-format", "json"], tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("moodle-archiver: Failed: ") and "backup" in last
    assert job.token not in done.stderr + done.stdout
    for line in done.stderr.strip().splitlines()[:-1]:
        json.loads(line)  # every other line is a JSON log record
    assert moodle.job(jobid).status == "FAILED"
