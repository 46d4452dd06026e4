"""Shard plans, the job directory's life cycle and what each shard writes to the ArchiveJob."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from moodle_archive_job.archivejob_status import ArchiveJobStatusSink, status_patch
from moodle_archive_job.checkpoint import CheckpointEntry, CheckpointStore, ManifestCounter
from moodle_archive_job.jobdir import JobDir
from moodle_archive_job.progress import Phase, ProgressEvent, ShardProgress
from moodle_archive_job.shards import ShardGate, ShardPlan
from moodle_archive_job.stage import JobFailed


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


def _gate(tmp_path: Path, attemptids: list[int]) -> tuple[ShardGate, list[CheckpointStore]]:
    jobdir = JobDir(tmp_path, "job")
    jobdir.create()
    stores = [CheckpointStore(jobdir.checkpoints, i) for i in range(2)]
    for s in stores:
        s.open()
    counter = ManifestCounter(jobdir.checkpoints, attemptids)
    return ShardGate(jobdir, stores[0], counter, attemptids, poll_sec=0.01), stores


def _checkpoint(store: CheckpointStore, attemptid: int) -> CheckpointEntry:
    staged = store.staging(attemptid)
    (staged / "report.pdf").write_bytes(b"pdf %d" % attemptid)
    return store.commit(attemptid, "f", "x", staged, [("x.pdf", "report.pdf")])


def test_the_gate_waits_for_the_other_shard_and_rerenders_what_is_corrupt(
    tmp_path: Path,
) -> None:
    ids = [1, 2, 3, 4]
    gate, (mine, other) = _gate(tmp_path, ids)
    entries = {a: _checkpoint(mine, a) for a in (1, 3)}
    counts: list[int] = []
    rendered: list[list[int]] = []

    async def tick() -> None:
        if len(counts) == 3:  # the other shard finishes while the gate waits
            _checkpoint(other, 2)
            _checkpoint(other, 4)
            (other.attempt_dir(4) / "report.pdf").write_bytes(b"pdf 5")  # then rots

    async def render(missing: list[int]) -> None:
        rendered.append(missing)
        for a in missing:
            entries[a] = _checkpoint(mine, a)

    async def main() -> int:
        return await gate.gather(entries, counts.append, tick, render)

    assert asyncio.run(main()) == 1
    assert rendered == [[4]] and sorted(entries) == ids
    assert counts[0] == 2 and counts[-1] == 4


def test_the_gate_stops_when_a_shard_failed(tmp_path: Path) -> None:
    gate, _ = _gate(tmp_path, [1, 2])
    gate.jobdir.record_failure(1, "Moodle refused attempt 2")

    async def nothing(*_: Any) -> None:
        return None

    with pytest.raises(JobFailed, match="shard 1 failed: Moodle refused attempt 2"):
        asyncio.run(gate.gather({}, lambda _: None, nothing, nothing))
