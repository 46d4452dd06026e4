"""One archive job from start to upload, in Moodle's order (spec 4.1), resumable and shardable.

RUNNING -> attempts (render_stage: fetch report, render, post-process, attachments, several in
flight, each checkpointed in the job directory) -> [shard 0: wait until all shards' attempts
are checkpointed] -> finishing (ZIP in `attemptids` order, metadata CSV, backups with
WAITING_FOR_BACKUP while pending, FINALIZING, upload, process_uploaded_artifact). Any failure
sends FAILED, the deadline sends TIMEOUT; FINISHED is never sent (Moodle sets it and deletes
the token itself).

The job directory `<work_dir>/job-<jobid>/` (jobdir.py) outlives the process: a replacement
runner verifies the checkpoints there and renders only what is missing (checkpoint.py). It is
removed after success. Sharding (several processes over one job directory) is in shards.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from .attempt_outcomes import AttemptFailed, AttemptOutcomes
from .checkpoint import CheckpointEntry, CheckpointStore, ManifestCounter
from .chunked_upload import DeliveryCheck
from .final_status import UNREACHABLE, ProcessingUndelivered, Verdict, deliver, verdict
from .finishing import Finisher
from .jobdir import JobDir
from .logs import register_secret
from .moodle_api import JobStatus, MoodleApi, api_for
from .moodle_client import MoodleClient, MoodleError, MoodleStatusError
from .progress import (
    Artifact,
    MoodleProgressLimiter,
    Phase,
    ProgressEvent,
    ProgressSink,
    ShardProgress,
    percent,
)
from .reasons import one_line
from .render_stage import RenderStage
from .requests_proxies import requests_proxies
from .settings import RunnerSettings
from .shards import ShardGate, ShardPlan
from .stage import JobFailed
from .task import ArchiveTask

log = logging.getLogger(__name__)

DEMO_MODE_MAX_ATTEMPTS = 10
RACE_RETRY_SEC = 1.0
SHARD_POLL_SEC = 1.0

__all__ = ["JobContext", "JobFailed", "JobOutcome", "run_job"]


class JobOutcome(BaseModel):
    phase: Phase
    message: str
    attempts_done: int
    attempts_total: int
    duration_sec: float
    attempts_resumed: int = 0
    attempts_rerendered: int = 0
    artifact: Artifact | None = None

    @property
    def succeeded(self) -> bool:
        return self.phase is Phase.SUCCEEDED


@dataclass
class JobContext:
    task: ArchiveTask
    token: SecretStr
    job_id: str
    settings: RunnerSettings
    sink: ProgressSink
    allowed_download_origins: frozenset[tuple[str, str, int | None]] = frozenset()
    keep_archive: Path | None = None
    shards: ShardPlan = field(default_factory=ShardPlan)
    shard_poll_sec: float = SHARD_POLL_SEC


async def run_job(ctx: JobContext) -> JobOutcome:
    register_secret(ctx.token.get_secret_value())
    settings = ctx.settings
    client = MoodleClient(
        ctx.task.moodle,
        ctx.token,
        retries=settings.moodle_retries,
        backoff_sec=settings.moodle_retry_backoff_sec,
        connect_timeout=settings.moodle_connect_timeout_sec,
        read_timeout=settings.moodle_read_timeout_sec,
        transfer_timeout=settings.moodle_transfer_timeout_sec,
        verify_tls=not settings.skip_https_cert_validation,
        proxies=requests_proxies(settings, ctx.task.moodle.base_url),
    )
    api = api_for(ctx.task, client, ctx.job_id, ctx.allowed_download_origins)
    jobdir = JobDir(settings.work_dir, ctx.job_id)
    jobdir.create()
    run = _JobRun(ctx, api, client, jobdir)
    try:
        outcome = await run.execute()
    finally:
        client.close()
    if outcome.succeeded and ctx.shards.is_finisher:
        jobdir.remove_after_success()
    return outcome


class _JobRun:
    def __init__(
        self, ctx: JobContext, api: MoodleApi, client: MoodleClient, jobdir: JobDir
    ) -> None:
        self.ctx = ctx
        self.task = ctx.task
        self.settings = ctx.settings
        self.plan = ctx.shards
        self.api = api
        self.client = client
        self.jobdir = jobdir
        self.store = CheckpointStore(jobdir.checkpoints, self.plan.index)
        self.started = time.monotonic()
        self.grace_deadline = self.started + self.settings.job_not_found_grace_sec
        self.job_seen = False
        self.limiter = MoodleProgressLimiter(self.settings.status_reporting_interval_sec)
        self.attemptids = list(self.task.attempts.attemptids) if self.task.attempts else []
        if self.settings.demo_mode:
            self.attemptids = self.attemptids[:DEMO_MODE_MAX_ATTEMPTS]
        self.own_ids = self.plan.slice(self.attemptids)
        self._own = frozenset(self.own_ids)
        self.entries: dict[int, CheckpointEntry] = {}  # verified or written by this process
        self.counter = ManifestCounter(jobdir.checkpoints, self.attemptids)
        self.all_done = 0  # over all shards (shard 0's view)
        self.resumed = 0
        self.rerendered = 0
        self.phase = Phase.RUNNING
        limit = self.settings.moodle_max_upload_bytes
        self.delivery = DeliveryCheck.for_task(self.task, limit, client)
        self.archive_bytes = 0  # what the checkpointed attempts will add to the archive
        self.outcomes = AttemptOutcomes()

    # --- outcome -------------------------------------------------------------------------------

    @property
    def own_done(self) -> int:
        return len(self.entries.keys() & self._own)

    def _event(self, phase: Phase, message: str = "", **extra: Any) -> ProgressEvent:
        total = len(self.attemptids)
        done = self.all_done if self.plan.is_finisher else self.own_done
        shown_total = total if self.plan.is_finisher else len(self.own_ids)
        shard = None
        if self.plan.sharded:
            shard = ShardProgress(index=self.plan.index, attempts_done=self.own_done,
                                  attempts_total=len(self.own_ids), phase=phase,
                                  attempts_resumed=self.resumed,
                                  attempts_rerendered=self.rerendered)
        return ProgressEvent(
            phase=phase,
            attempts_done=done,
            attempts_total=shown_total,
            attempts_resumed=self.resumed,
            attempts_rerendered=self.rerendered,
            shard=shard,
            progress=100 if phase is Phase.SUCCEEDED else percent(done, shown_total),
            message=message,
            failed_attempts=list(self.outcomes.failed),
            warnings=list(self.outcomes.warnings),
            **extra,
        )

    def emit(self, phase: Phase, message: str = "", **extra: Any) -> None:
        self.phase = phase
        self.ctx.sink.emit(self._event(phase, message, **extra))

    def _outcome(self, phase: Phase, message: str, artifact: Artifact | None = None) -> JobOutcome:
        event = self._event(phase)
        return JobOutcome(
            phase=phase,
            message=message,
            attempts_done=event.attempts_done,
            attempts_total=event.attempts_total,
            attempts_resumed=self.resumed,
            attempts_rerendered=self.rerendered,
            duration_sec=round(time.monotonic() - self.started, 3),
            artifact=artifact,
        )

    async def execute(self) -> JobOutcome:
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_sec
        try:
            async with asyncio.timeout_at(deadline):
                artifact = await self._archive()
        except TimeoutError:
            now = self._event(self.phase)
            message = (
                f"job runtime limit of {self.settings.request_timeout_sec:g} s reached "
                f"({self.phase}, {now.attempts_done}/{now.attempts_total} attempts)"
            )
            return await self._failed(Phase.TIMED_OUT, JobStatus.TIMEOUT, message)
        except ProcessingUndelivered as exc:
            # In Moodle's draft area, not processed: FAILED would throw the upload away.
            message = _one_line(exc)
            log.error("job failed", extra={"fields": {"error": message}})
            self.emit(Phase.FAILED, message, pending_moodle_status=str(JobStatus.FINISHED),
                      pending_artifact=exc.artifact)
            return self._outcome(Phase.FAILED, message)
        except Exception as exc:  # every failure ends in FAILED at Moodle and a clear message
            if isinstance(exc, AttemptFailed):
                self.outcomes.fail(exc.attemptid)
            message = _one_line(exc)
            log.error("job failed", extra={"fields": {"error": message}})
            return await self._failed(Phase.FAILED, JobStatus.FAILED, message)
        if artifact is None:
            message = (f"shard {self.plan.index} of {self.plan.count}: "
                       f"{self.own_done} attempts checkpointed")
            self.emit(Phase.SUCCEEDED, message)
            return self._outcome(Phase.SUCCEEDED, message)
        message = f"Moodle accepted {artifact.name} ({artifact.size} bytes)"
        self.all_done = len(self.attemptids)
        self.emit(Phase.SUCCEEDED, message, artifact=artifact)
        return self._outcome(Phase.SUCCEEDED, message, artifact)

    async def _failed(self, phase: Phase, status: JobStatus, message: str) -> JobOutcome:
        if self.plan.sharded:  # the other shards stop too
            await asyncio.to_thread(self.jobdir.record_failure, self.plan.index, message)
        told = await self._final_status(status)
        self.emit(phase, message, **told)
        return self._outcome(phase, message)

    async def _final_status(self, status: JobStatus) -> dict[str, str]:
        """Tell Moodle; the event fields saying whether it heard (`moodle_status`) or whoever
        holds the token must still tell it (`pending_moodle_status`: the operator will)."""
        try:
            answer = await asyncio.wait_for(asyncio.to_thread(deliver, self.api, status), 30)
        except TimeoutError:
            answer = UNREACHABLE
        if verdict(answer) is Verdict.RETRY:
            log.warning("could not tell Moodle the final status; left to the operator",
                        extra={"fields": {"status": str(status), "answer": answer}})
            return {"pending_moodle_status": str(status)}
        return {"moodle_status": str(status)}

    # --- the job -------------------------------------------------------------------------------

    async def _archive(self) -> Artifact | None:
        """The archive Moodle accepted, or None for a non-zero shard that did its part."""
        finisher = Finisher(self, self.jobdir.checkpoints, self.ctx.keep_archive)
        if (artifact := finisher.already_uploaded()) is not None:
            self.all_done = len(self.attemptids)
            return artifact if self.plan.is_finisher else None
        if (failure := self.jobdir.failure()) is not None:
            raise JobFailed(f"shard {failure.shard_index} failed: {failure.message}")
        await self._resume()
        if self.plan.is_finisher:
            await self._start()
            self._check_delivery()  # before rendering: the attempt count may already tell
        await RenderStage(self, self.store, self._attempt_done).render(
            [a for a in self.own_ids if a not in self.entries]
        )
        if not self.plan.is_finisher:
            return None
        if self.plan.sharded:
            await self._gather_shards()
        return await finisher.finish(self.attemptids, self.entries)

    async def _start(self) -> None:
        self.emit(Phase.RUNNING, "starting")
        while True:
            progress = percent(self.all_done, len(self.attemptids))
            answer = await asyncio.to_thread(self.api.update_status, JobStatus.RUNNING, progress)
            self.limiter.touch()
            if answer == "OK":
                self.job_seen = True
                return
            if answer not in self.api.job_not_found_statuses:
                return  # logged by update_status; never fatal (spec 3.3)
            if time.monotonic() >= self.grace_deadline:
                raise JobFailed(
                    "Moodle does not know this job (it never registered the job id); giving up"
                )
            await asyncio.sleep(RACE_RETRY_SEC)

    async def race_retry(self, fn: Any, *args: Any) -> Any:
        """Retry while Moodle has not inserted the job row yet (spec 4.6), then fail fast."""
        while True:
            try:
                result = await asyncio.to_thread(fn, *args)
            except MoodleStatusError as exc:
                if (
                    exc.status in self.api.job_not_found_statuses
                    and not self.job_seen
                    and time.monotonic() < self.grace_deadline
                ):
                    await asyncio.sleep(RACE_RETRY_SEC)
                    continue
                raise
            self.job_seen = True
            return result

    # --- checkpoints and shards ----------------------------------------------------------------

    async def _resume(self) -> None:
        """Trust what earlier pods checkpointed for this shard's attempts; drop what is corrupt."""
        await asyncio.to_thread(self.store.open)
        verified = await asyncio.to_thread(self.store.verify, self.own_ids)
        if verified.corrupt:
            await asyncio.to_thread(self.store.discard, verified.corrupt)
        self.entries.update(verified.entries)
        self.resumed += len(verified.entries)
        self.rerendered += len(verified.corrupt)
        self.all_done = await asyncio.to_thread(self._count_all)
        todo = len(self.own_ids) - self.own_done
        if verified.entries or verified.corrupt:
            self.emit(Phase.RUNNING, f"resuming: {len(verified.entries)} attempts checkpointed, "
                      f"{len(verified.corrupt)} corrupt, {todo} to render")
        elif todo:
            self.emit(Phase.RUNNING, f"rendering {todo} attempts")

    def _check_delivery(self, new: CheckpointEntry | None = None) -> None:
        """Fail now if the archive will not fit Moodle's upload limit (chunked_upload.py)."""
        if new is None:
            self.archive_bytes = sum(f.size for e in self.entries.values() for f in e.files)
        else:
            self.archive_bytes += sum(f.size for f in new.files)
        self.delivery.check(self.archive_bytes, len(self.entries), len(self.attemptids))

    def _count_all(self) -> int:
        if not self.plan.sharded:
            return self.own_done
        return len(self.counter.done() | self.entries.keys())

    async def _attempt_done(self, entry: CheckpointEntry) -> None:
        self.entries[entry.attemptid] = entry
        if self.plan.is_finisher:  # the other shards' manifests are read incrementally
            self.all_done = await asyncio.to_thread(self._count_all)
            self._check_delivery(entry)
        self.emit(Phase.RUNNING, f"attempt {self.own_done} of {len(self.own_ids)} checkpointed")
        await self._moodle_progress()

    async def _moodle_progress(self) -> None:
        total = len(self.attemptids)
        if self.plan.is_finisher and self.limiter.due() and self.all_done < total:
            self.limiter.touch()
            await asyncio.to_thread(
                self.api.update_status, JobStatus.RUNNING, percent(self.all_done, total)
            )

    async def _gather_shards(self) -> None:
        total = len(self.attemptids)
        shown = -1

        def count(done: int) -> None:
            nonlocal shown
            self.all_done = done
            if done != shown:
                shown = self.all_done
                self.emit(Phase.RUNNING, f"waiting for the other shards: {self.all_done} of "
                          f"{total} attempts checkpointed")

        gate = ShardGate(self.jobdir, self.store, self.counter, self.attemptids,
                         self.ctx.shard_poll_sec)
        self.rerendered += await gate.gather(
            self.entries, count, self._moodle_progress,
            RenderStage(self, self.store, self._attempt_done).render,
        )


def _one_line(exc: BaseException) -> str:
    from .render import RenderError  # e.g. Chromium not found or not starting

    known = isinstance(exc, JobFailed | MoodleError | AttemptFailed | RenderError)
    text = str(exc) if known else f"{type(exc).__name__}: {exc}"
    return one_line(text) or type(exc).__name__
