"""A job survives its runner: killed mid-run or mid-upload, a new runner over the same work
directory renders only what is missing, re-renders what is corrupt, and uploads once."""

from __future__ import annotations

import asyncio
import hashlib
import time
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from moodle_archive_job.checkpoint import CheckpointStore
from moodle_archive_job.pipeline import JobContext, JobOutcome, run_job
from moodle_archive_job.progress import Phase, ProgressEvent
from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_job.settings import RunnerSettings
from tests.browser.pdfs import pdf_text
from tests.fakemoodle import FakeMoodle, Job
from tests.runner.conftest import fast_settings
from tests.runner.procs import REPORT, CliJob, finish, kill_tree, runner_env, wait_for
from tests.runner.test_archive_end_to_end import check_sidecars, expected_csv, expected_files

pytestmark = pytest.mark.browser

PROCESS = "quiz_archiver_process_uploaded_artifact"


def test_runner_killed_at_half_resumes_and_renders_only_what_is_missing(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    attempts, concurrency = 24, 2
    quiz = moodle.create_quiz(attempts=attempts, attachments_per_attempt=1, with_formulas=False)
    job = moodle.create_job(quiz, keep_html_files=True, backups=("quiz",),
                            foldername_pattern="${username}/${attemptid}",
                            filename_pattern="attempt-${attemptid}")
    cli = CliJob.create(moodle, job, tmp_path)
    env = runner_env(cli.work, concurrency)

    first = cli.start(env=env)
    wait_for(lambda: cli.manifest_lines() >= attempts // 2, first)
    kill_tree(first)
    fetched_before = cli.report_calls()
    assert attempts // 2 <= sum(fetched_before.values()) < attempts
    # The token never reaches the job directory.
    for path in cli.jobdir.rglob("*"):
        if path.is_file():
            assert job.token.encode() not in path.read_bytes(), path

    rc, err = finish(cli.start(env=env))
    assert rc == 0, err
    assert "resuming: " in err
    fetched = cli.report_calls()
    assert set(fetched) == set(quiz.attemptids)
    rerendered = sum(fetched.values()) - attempts
    assert 0 <= rerendered <= concurrency, fetched
    assert cli.calls("upload") == 1 and cli.calls(PROCESS) == 1
    assert moodle.job(cli.jobid).status_name == "FINISHED"
    with zipfile.ZipFile(BytesIO(job.artifact or b"")) as zf:
        assert set(zf.namelist()) == expected_files(quiz, [job.request_body[
            "task_moodle_backups"][0]["filename"]], html=True)
        check_sidecars(zf)
        assert zf.read("attempts_metadata.csv") == expected_csv(quiz)
    # After success only the marker for late restarts is left.
    assert [p.name for p in cli.jobdir.iterdir()] == ["uploaded.json"]


class _StopAfter:
    """A sink that cancels the run (like SIGKILL: nothing is reported) after `n` attempts."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.task: asyncio.Task[JobOutcome] | None = None
        self.events: list[ProgressEvent] = []

    def emit(self, event: ProgressEvent) -> None:
        self.events.append(event)
        if self.task is not None and event.attempts_done >= self.n:
            self.task.cancel()


def _run(job: Job, jobid: str, settings: RunnerSettings, stop_after: int | None = None
         ) -> JobOutcome | None:
    parsed = parse_archive_request(job.request_body, detect_protocol(job.request_body))
    sink = _StopAfter(stop_after if stop_after is not None else 10**9)

    async def main() -> JobOutcome | None:
        task = asyncio.create_task(run_job(JobContext(
            task=parsed.task, token=parsed.token, job_id=jobid, settings=settings, sink=sink)))
        sink.task = task
        try:
            return await task
        except asyncio.CancelledError:
            return None

    return asyncio.run(main())


def test_corrupt_and_torn_checkpoints_are_rendered_again_never_zipped(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    quiz = moodle.create_quiz(attempts=8, with_formulas=False)
    job = moodle.create_job(quiz, backups=())
    jobid = "0b7c5d3e-2f1a-4c8b-9d6e-5a4b3c2d1e0f"
    moodle.register_job(job, jobid)
    settings = fast_settings(tmp_path, attempt_concurrency=1)

    assert _run(job, jobid, settings, stop_after=6) is None
    store = CheckpointStore(tmp_path / f"job-{jobid}" / "checkpoints")
    verified = store.verify(quiz.attemptids)
    assert len(verified.entries) >= 6
    ids = sorted(verified.entries, key=quiz.attemptids.index)
    corrupt, torn = ids[0], ids[-1]
    pdf = store.attempt_dir(corrupt) / "report.pdf"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    pdf.write_bytes(bytes(data))
    manifest = store.manifest.read_bytes()
    assert manifest.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(f'{{"attemptid":{torn},'
                                                                   .encode())
    store.manifest.write_bytes(manifest[:-25])
    before = {a: n for a, n in _report_calls(moodle, jobid).items()}

    outcome = _run(job, jobid, settings)
    assert outcome is not None and outcome.phase is Phase.SUCCEEDED, outcome
    assert outcome.attempts_rerendered == 2
    assert outcome.attempts_resumed == len(verified.entries) - 2
    after = _report_calls(moodle, jobid)
    again = {a for a in after if after[a] > before.get(a, 0)}
    assert again == {corrupt, torn} | (set(quiz.attemptids) - set(verified.entries))
    with zipfile.ZipFile(BytesIO(job.artifact or b"")) as zf:
        check_sidecars(zf)
        user = quiz.users[quiz.attempt(corrupt).userid]
        name = next(n for n in zf.namelist() if n.endswith(".pdf") and f"{corrupt}" in n
                    and user.username in n)
        stored = zf.read(name)
        assert bytes(data) != stored
        (tmp_path / "check.pdf").write_bytes(stored)
        assert quiz.attempt(corrupt).answer_word in pdf_text(tmp_path / "check.pdf")
        assert hashlib.sha256(stored).hexdigest() == zf.read(name + ".sha256").decode()


def _report_calls(moodle: FakeMoodle, jobid: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for c in moodle.calls_for(jobid):
        if c.wsfunction == REPORT:
            counts[int(c.params["attemptid"])] = counts.get(int(c.params["attemptid"]), 0) + 1
    return counts


def test_finisher_killed_after_the_upload_does_not_upload_again(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    quiz = moodle.create_quiz(attempts=3, with_formulas=False)
    job = moodle.create_job(quiz, backups=())
    cli = CliJob.create(moodle, job, tmp_path)
    # Moodle holds the processing call; the runner dies meanwhile and the call never lands.
    moodle.faults.set_latency(PROCESS, 60)
    moodle.faults.fail_next(PROCESS, 1, status=503)
    first = cli.start()
    # Killed once the processing call is held (it took the failure meant for it), not
    # merely after the upload: else the next runner's call would get that failure.
    wait_for(lambda: (cli.jobdir / "upload.json").exists()
             and moodle.faults.failures_pending(PROCESS) == 0, first)  # fmt: skip
    kill_tree(first)
    moodle.faults.set_latency(PROCESS, 0)
    assert cli.calls("upload") == 1

    rc, err = finish(cli.start())
    assert rc == 0, err
    assert cli.calls("upload") == 1, "the archive was uploaded twice"
    assert moodle.job(cli.jobid).status_name == "FINISHED" and job.artifact is not None
    with zipfile.ZipFile(BytesIO(job.artifact)) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".pdf")]) == 3

    calls = len(moodle.calls_for(cli.jobid))
    rc, err = finish(cli.start())  # a pod restarted after it all: success, Moodle untouched
    assert rc == 0, err
    assert len(moodle.calls_for(cli.jobid)) == calls


def test_a_processing_call_that_landed_before_the_runner_died_is_not_failed_after_it(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    """The runner died while Moodle processed the archive: the next one's call finds the
    job over (its token gone), which means Moodle has it, not that the job failed."""
    quiz = moodle.create_quiz(attempts=1, with_formulas=False)
    job = moodle.create_job(quiz, backups=())
    cli = CliJob.create(moodle, job, tmp_path)
    moodle.faults.set_latency(PROCESS, 3)  # Moodle still processes it after the runner died
    first = cli.start()
    wait_for(lambda: (cli.jobdir / "upload.json").exists(), first)
    kill_tree(first)
    deadline = time.monotonic() + 30
    while moodle.job(cli.jobid).status_name != "FINISHED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert moodle.job(cli.jobid).status_name == "FINISHED"
    moodle.faults.set_latency(PROCESS, 0)

    rc, err = finish(cli.start())
    assert rc == 0, err
    assert cli.calls("upload") == 1 and cli.calls(PROCESS) == 2
    statuses = [s for s, _ in job.statusextras_history]
    assert statuses.count("FINISHED") == 1 and "FAILED" not in statuses
