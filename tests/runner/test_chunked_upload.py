"""The runner against both plugin generations' upload limits, with real Chromium."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from moodle_archive_job import chunked_upload
from moodle_archive_job.progress import Phase
from tests.fakemoodle import FakeMoodle
from tests.runner.conftest import fast_settings, run_fake_job

pytestmark = pytest.mark.browser

MB = 1_000_000


@pytest.mark.slow
def test_100_mb_archive_with_a_10_mb_limit(tmp_path: Path) -> None:
    with FakeMoodle(plugin_release="next") as moodle:
        moodle.faults.max_upload_bytes = 10 * MB
        moodle.faults.post_max_size = 10 * MB
        moodle.faults.attachment_oversize_bytes = 100 * MB  # one big student file
        quiz = moodle.create_quiz(attempts=1, attachments_per_attempt=1)
        job = moodle.create_job(quiz)
        settings = fast_settings(tmp_path, zip_compression_algo="STORED")
        result = run_fake_job(moodle, job, settings)
        assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
        artifact = result.outcome.artifact
        assert artifact is not None and artifact.size > 100 * MB
        uploads = [c for c in moodle.calls if c.endpoint == "upload"]
        assert len(uploads) == 11 and all(c.bytes_in <= 10 * MB for c in uploads)
        (process,) = moodle.ws_calls("quiz_archiver_process_uploaded_artifact")
        assert process.params["artifact_count"] == "11"
        stored = moodle.job(result.jobid)
        assert stored.status_name == "FINISHED"
        assert hashlib.sha256(stored.artifact or b"").hexdigest() == artifact.sha256
        big = [i for i in result.archive().infolist() if "/attachments/" in i.filename]
        assert [i.file_size for i in big if not i.filename.endswith(".sha256")] == [100 * MB]
        assert not moodle.site.drafts


def test_known_limit_without_chunks_fails_before_rendering(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    quiz = moodle.create_quiz(attempts=6)
    job = moodle.create_job(quiz)  # plugin 4.1.0: sends no limit, cannot take chunks
    settings = fast_settings(tmp_path, moodle_max_upload_bytes=20_000)
    result = run_fake_job(moodle, job, settings)
    assert result.outcome.phase is Phase.FAILED
    assert "$CFG->maxbytes" in result.outcome.message and "post_max_size" in result.outcome.message
    assert not moodle.ws_calls("quiz_archiver_generate_attempt_report")
    assert moodle.job(result.jobid).status_name == "FAILED"


def test_reassembly_failure_ends_the_job_with_a_clear_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that numbers its chunks from 1: Moodle finds no chunk 0.
    monkeypatch.setattr(
        chunked_upload, "chunk_name", lambda name, index: f"{name}.chunk{index + 1:09d}.bin"
    )
    with FakeMoodle(plugin_release="next") as moodle:
        moodle.faults.max_upload_bytes = 40_000
        quiz = moodle.create_quiz(attempts=1, attachments_per_attempt=2)
        result = run_fake_job(moodle, moodle.create_job(quiz), fast_settings(tmp_path))
        message = result.outcome.message
        assert result.outcome.phase is Phase.FAILED
        assert "E_CHUNK_REASSEMBLY_FAILED" in message and "chunks" in message
        assert "\n" not in message and result.job.token not in message
        assert moodle.job(result.jobid).status_name == "FAILED"
