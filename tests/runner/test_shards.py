"""One job as several runner processes over one work directory (the Indexed Job's shards)."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from moodle_archive_job.progress import Phase
from tests.fakemoodle import FakeMoodle, Quiz
from tests.runner.conftest import fast_settings, run_fake_job
from tests.runner.procs import CliJob, finish, runner_env
from tests.runner.test_archive_end_to_end import check_sidecars

pytestmark = pytest.mark.browser

SHARDS = 4
PROCESS = "quiz_archiver_process_uploaded_artifact"


def _contents(artifact: bytes) -> tuple[list[str], dict[str, bytes]]:
    """Member names in order (backups by position: each job gets its own), and the bytes of
    the metadata CSV and the attachments (the reports differ per job and rendering)."""
    with zipfile.ZipFile(BytesIO(artifact)) as zf:
        check_sidecars(zf)
        names = zf.namelist()
        contents = {n: zf.read(n) for n in names
                    if n.startswith("attempts_metadata") or "/attachments/" in n}
    return [n.split("-backup-")[0] if n.startswith("backups/") else n for n in names], contents


def _same_user_quiz(moodle: FakeMoodle, attempts: int) -> Quiz:
    # A static folder pattern: every attempt asks for the same folder, so the archive's
    # layout depends on allocating folders in attemptids order (spec 5.2), whoever rendered.
    users = [{"username": "same", "firstname": "Sam", "lastname": "E"}]
    return moodle.create_quiz(attempts=attempts, users=users * attempts, with_formulas=False,
                              attachments_per_attempt=1)


def test_four_shards_render_each_attempt_once_and_upload_once(
    moodle: FakeMoodle, tmp_path: Path
) -> None:
    attempts = 20
    quiz = _same_user_quiz(moodle, attempts)
    options = {"foldername_pattern": "${username}", "filename_pattern": "attempt",
               "keep_html_files": True, "backups": ("quiz",)}
    job = moodle.create_job(quiz, **options)
    cli = CliJob.create(moodle, job, tmp_path)
    env = runner_env(cli.work, concurrency=1)
    procs = [cli.start("--shards", str(SHARDS), env={**env, "JOB_COMPLETION_INDEX": str(i)})
             for i in range(SHARDS)]
    results = [finish(p) for p in procs]
    for index, (rc, err) in enumerate(results):
        assert rc == 0, (index, err)
    assert "waiting for the other shards" in results[0][1]
    assert "shard 3 of 4: 5 attempts checkpointed" in results[3][1]

    fetched = cli.report_calls()
    assert sorted(fetched) == sorted(quiz.attemptids)
    assert set(fetched.values()) == {1}, fetched
    assert cli.calls("upload") == 1 and cli.calls(PROCESS) == 1
    assert moodle.job(cli.jobid).status_name == "FINISHED"
    statuses = [c.params.get("status") for c in moodle.calls_for(cli.jobid)
                if c.wsfunction == "quiz_archiver_update_job_status"]
    assert statuses[0] == "RUNNING" and statuses.count("FINALIZING") == 1
    assert [p.name for p in cli.jobdir.iterdir()] == ["uploaded.json"]

    # The same job run by one process has the same archive (PDFs aside).
    single = moodle.create_job(quiz, **options)
    result = run_fake_job(moodle, single, fast_settings(tmp_path / "single"))
    assert result.outcome.phase is Phase.SUCCEEDED, result.outcome.message
    sharded_names, sharded = _contents(job.artifact or b"")
    single_names, alone = _contents(single.artifact or b"")
    assert sharded_names == single_names
    assert sharded == alone and len(alone) == 2 * (1 + attempts)
    folders = [n.rsplit("/", 1)[0] for n in sharded_names if n.endswith("attempt.html")]
    assert folders == ["attempts/same"] + [f"attempts/same_{i}" for i in quiz.attemptids[1:]]


def test_a_failed_shard_fails_the_job_and_the_finisher(moodle: FakeMoodle, tmp_path: Path) -> None:
    quiz = moodle.create_quiz(attempts=4, with_formulas=False)
    job = moodle.create_job(quiz, backups=())
    cli = CliJob.create(moodle, job, tmp_path)
    # Shard 1 renders attempts 2 and 4 of the list; the first report it asks for is refused.
    moodle.faults.fail_next("quiz_archiver_generate_attempt_report", 1, status=400)
    env = runner_env(cli.work, concurrency=1)
    shard1 = cli.start("--shards", "2", "--shard-index", "1", env=env)
    rc1, err1 = finish(shard1)
    assert rc1 == 1, err1
    failure = json.loads((cli.jobdir / "failed.json").read_text())
    assert failure["shard_index"] == 1
    rc0, err0 = finish(cli.start("--shards", "2", "--shard-index", "0", env=env))
    assert rc0 == 1 and "shard 1 failed" in err0, err0
    assert moodle.job(cli.jobid).status_name == "FAILED"
    assert not moodle.ws_calls("quiz_archiver_process_uploaded_artifact")
