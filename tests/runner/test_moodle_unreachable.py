"""Moodle stops answering mid-job: the reason names Moodle and what it did not answer, never a
downstream symptom (a page printed without its stylesheet, Ghostscript failing on it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from moodle_archive_job.progress import Phase
from moodle_archive_job.settings import RunnerSettings
from tests.fakemoodle import FakeMoodle, Job
from tests.runner.conftest import RunResult, fast_settings, run_fake_job

pytestmark = pytest.mark.browser


def run_while_moodle_goes_down(
    moodle: FakeMoodle, job: Job, settings: RunnerSettings, mode: str
) -> RunResult:
    """Run the job; Moodle goes down (`mode`) as soon as the first report was asked for."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if moodle.ws_calls("quiz_archiver_generate_attempt_report"):
                moodle.faults.down(mode)  # type: ignore[arg-type]
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return run_fake_job(moodle, job, settings)
    finally:
        watcher.join(5)
        moodle.faults.up()


def test_moodle_hanging_while_a_page_loads_is_named_not_ghostscript(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=2, with_formulas=False))
    moodle.faults.set_latency("static", 0.5)  # the page's stylesheet is still on its way
    settings = fast_settings(
        tmp_path, pdfa_conversion=True, attempt_concurrency=1, render_attempts=1,
        render_retry_backoff_sec=0.1, wait_for_navigation_timeout_sec=2,
        moodle_read_timeout_sec=1, moodle_retries=1,
    )  # fmt: skip
    result = run_while_moodle_goes_down(moodle, job, settings, "hang")

    message = result.outcome.message
    assert result.outcome.phase is Phase.FAILED
    assert message.startswith("Moodle did not answer the page of attempt "), message
    assert "(no answer within " in message
    assert "stylesheet http://" in message and "timed out after 2 s" in message
    assert "Ghostscript" not in message and "PDF/A" not in message
    assert result.sink.events[-1].failed_attempts == []  # not the attempt's fault
    # The page that could not be printed, for the admin, without the token.
    (folder,) = (tmp_path / f"job-{result.jobid}" / "diagnostics").iterdir()
    assert folder.name.startswith("attempt-")
    assert "timed out after 2 s" in (folder / "reason.txt").read_text()
    assert (folder / "screenshot.png").is_file() and (folder / "page.html").is_file()
    for path in folder.iterdir():
        assert job.token.encode() not in path.read_bytes(), path.name


def test_moodle_refusing_web_service_calls_names_the_call_and_how_long(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=3, with_formulas=False))
    settings = fast_settings(
        tmp_path, pdfa_conversion=True, moodle_retries=2, moodle_retry_backoff_sec=0.2,
    )  # fmt: skip
    result = run_while_moodle_goes_down(moodle, job, settings, "refuse")

    message = result.outcome.message
    assert result.outcome.phase is Phase.FAILED
    assert message.startswith("Moodle did not answer "), message
    assert message.endswith("(connection refused)") or "(connection refused):" in message
    assert "Ghostscript" not in message
