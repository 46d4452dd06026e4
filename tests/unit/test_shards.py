"""Shard plans, the job directory's life cycle and what each shard writes to the ArchiveJob."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from moodle_archive_job.archivejob_status import ArchiveJobStatusSink, status_patch
from moodle_archive_job.jobdir import JobDir
from moodle_archive_job.progress import Phase, ProgressEvent, ShardProgress
from moodle_archive_job.shards import ShardPlan


def test_slices_cover_every_attempt_once() -> None:
    ids = [11, 5, 8, 2, 40, 7, 3]
    for count in (1, 2, 3, 4, 7, 9):
        slices = [ShardPlan(count=count, index=i).slice(ids) for i in range(count)]
        assert sorted(a for s in slices for a in s) == sorted(ids)
    assert ShardPlan(count=3, index=1).slice(ids) == [5, 40]


def test_index_from_the_indexed_job() -> None:
    assert ShardPlan.from_args(4, None, {"JOB_COMPLETION_INDEX": "3"}).index == 3
    assert ShardPlan.from_args(4, 2, {"JOB_COMPLETION_INDEX": "3"}).index == 2
    assert ShardPlan.from_args(1, None, {}) == ShardPlan()
    plan = ShardPlan.from_args(4, 0, {})
    assert plan.is_finisher and plan.sharded
    with pytest.raises(ValidationError):
        ShardPlan.from_args(2, None, {"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(ValidationError):
        ShardPlan(count=0)


def test_job_dir_keeps_diagnostics_and_the_done_marker(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path, "abc")
    jobdir.create()
    (jobdir.checkpoints / "attempts").mkdir(parents=True)
    (jobdir.diagnostics / "1").mkdir(parents=True)
    jobdir.write_state(jobdir.uploaded_state, {"artifact": {"name": "a.zip", "size": 1,
                                                             "sha256": "0" * 64}})
    jobdir.zip_path("a.zip").write_bytes(b"zip")
    jobdir.scratch(0)
    jobdir.remove_after_success()
    assert sorted(p.name for p in jobdir.path.iterdir()) == ["diagnostics", "uploaded.json"]


def test_first_failure_is_kept(tmp_path: Path) -> None:
    jobdir = JobDir(tmp_path, "abc")
    jobdir.create()
    assert jobdir.failure() is None
    jobdir.record_failure(2, "boom")
    jobdir.record_failure(0, "later")
    failure = jobdir.failure()
    assert failure is not None and (failure.shard_index, failure.message) == (2, "boom")


def _event(index: int | None) -> ProgressEvent:
    shard = None if index is None else ShardProgress(index=index, attempts_done=3,
                                                     attempts_total=5, phase=Phase.RUNNING,
                                                     attempts_resumed=2)
    return ProgressEvent(phase=Phase.RUNNING, attempts_done=7, attempts_total=20, progress=35,
                         attempts_resumed=4, attempts_rerendered=1, shard=shard)


def test_a_non_zero_shard_patches_only_its_own_entry() -> None:
    assert status_patch(_event(2)) == {"status": {"shards": {"2": {
        "attemptsDone": 3, "attemptsTotal": 5, "phase": "Running", "attemptsResumed": 2,
        "attemptsRerendered": 0}}}}


def test_shard_zero_owns_the_top_level_fields() -> None:
    status = status_patch(_event(0))["status"]
    assert status["runnerPhase"] == "Running"
    assert (status["attemptsDone"], status["attemptsTotal"]) == (7, 20)
    assert (status["attemptsResumed"], status["attemptsRerendered"]) == (4, 1)
    assert status["shards"]["0"]["attemptsDone"] == 3
    assert "shards" not in status_patch(_event(None))["status"]


class _Session:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch(self, url: str, json: dict[str, Any], **_: Any) -> SimpleNamespace:
        self.patches.append(json)
        return SimpleNamespace(status_code=200)

    def close(self) -> None:
        pass


def test_a_shard_sink_sends_phase_changes_at_once(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("sa")
    session = _Session()
    sink = ArchiveJobStatusSink("https://api/status", token, None, interval_sec=60,
                                session=session)  # type: ignore[arg-type]
    for done in (1, 2, 3):  # one phase within the interval: one patch, the newest state
        sink.emit(_event(1).model_copy(update={"shard": ShardProgress(
            index=1, attempts_done=done, attempts_total=5)}))
        time.sleep(0.1)
    final = ShardProgress(index=1, attempts_done=5, attempts_total=5, phase=Phase.SUCCEEDED)
    sink.emit(_event(1).model_copy(update={"phase": Phase.SUCCEEDED, "shard": final}))
    time.sleep(0.5)  # a phase change goes out at once, not after the interval
    sent = [p["status"]["shards"]["1"] for p in session.patches]
    sink.close()
    assert all(set(p["status"]) == {"shards"} for p in session.patches)
    assert [s["phase"] for s in sent] == ["Running", "Succeeded"]
    assert sent[-1]["attemptsDone"] == 5
