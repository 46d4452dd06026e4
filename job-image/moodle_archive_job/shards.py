"""Shards: one job rendered by several runner processes (an Indexed Job) over one job directory.

Shard I of N renders `attemptids[I::N]` into the shared checkpoint store, appending to its own
manifest. Shard 0 is also the finisher: it renders its slice, waits until every attempt is
recorded in some shard's manifest (polling the job directory), verifies them all (re-rendering
itself any entry found corrupt), and then runs the finishing step once (metadata CSV, backups,
ZIP, upload, final status).

Who reports what:

* Moodle hears only from shard 0 (RUNNING with the percentage over all shards' manifests,
  then the later statuses). Other shards call Moodle only for reports and attachments.
* In the ArchiveJob status, shard 0 owns the top-level fields (`runnerPhase`, `attemptsDone`
  over all shards, `attemptsResumed`/`attemptsRerendered` of its own process); every shard
  writes its own `status.shards["<I>"]` entry (`attemptsDone`, `attemptsTotal` of its slice,
  `phase`, `attemptsResumed`, `attemptsRerendered`), and a non-zero shard nothing else, so
  the operator's reading of `runnerPhase` stays the finisher's.

A shard that fails for good (an error, or its runtime limit) tells Moodle FAILED (TIMEOUT),
writes `failed.json` into the job directory and exits 1 (3); the Job's pod failure policy then
fails the Job. Shard 0 waiting for the others sees `failed.json` and fails too; a shard
started after it exists fails at once without rendering. A shard stopped by SIGTERM writes
nothing: its pod is replaced and resumes from the checkpoints. A shard that starts after the
job finished (`uploaded.json`) reports success without doing anything.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Self

from pydantic import BaseModel, Field, model_validator

from .checkpoint import CheckpointEntry, CheckpointStore, ManifestCounter
from .jobdir import JobDir
from .stage import JobFailed

MAX_SHARDS = 256


class ShardPlan(BaseModel):
    count: int = Field(default=1, ge=1, le=MAX_SHARDS)
    index: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _index_in_range(self) -> Self:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} is not below the shard count {self.count}")
        return self

    @classmethod
    def from_args(
        cls, count: int, index: int | None, environ: Mapping[str, str] = os.environ
    ) -> ShardPlan:
        """`--shard-index` if given, else the Indexed Job's JOB_COMPLETION_INDEX, else 0."""
        if index is None:
            raw = environ.get("JOB_COMPLETION_INDEX", "").strip()
            index = int(raw) if raw else 0
        return cls(count=count, index=index)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def is_finisher(self) -> bool:
        return self.index == 0

    def slice(self, attemptids: list[int]) -> list[int]:
        return attemptids[self.index :: self.count]


class ShardGate:
    """Shard 0's wait for the other shards, then the check of what they checkpointed."""

    def __init__(
        self,
        jobdir: JobDir,
        store: CheckpointStore,
        counter: ManifestCounter,
        attemptids: list[int],
        poll_sec: float,
    ) -> None:
        self.jobdir = jobdir
        self.store = store
        self.counter = counter
        self.attemptids = attemptids
        self.poll_sec = poll_sec

    async def gather(
        self,
        entries: dict[int, CheckpointEntry],
        on_count: Callable[[int], None],
        on_tick: Callable[[], Awaitable[None]],
        render: Callable[[list[int]], Awaitable[None]],
    ) -> int:
        """Fill `entries` with every attempt's verified checkpoint; return how many were found
        torn or corrupt (recorded by a shard that has finished) and rendered here again.

        `on_count(n)` hears the number of attempts recorded so far at every poll, `on_tick()`
        is awaited once per poll interval (Moodle progress), `render(ids)` renders attempts
        into `entries` (through the store)."""
        rerendered = 0
        while True:
            ticker = asyncio.create_task(self._tick(on_tick))
            try:
                await self._wait(on_count)
            finally:
                ticker.cancel()
            others = [a for a in self.attemptids if a not in entries]
            verified = await asyncio.to_thread(self.store.verify, others)
            entries.update(verified.entries)
            missing = [a for a in others if a not in verified.entries]
            if not missing:
                return rerendered
            await asyncio.to_thread(self.store.discard, missing)
            rerendered += len(missing)
            await render(missing)

    async def _wait(self, on_count: Callable[[int], None]) -> None:
        """Until the manifests record all attempts; fails if any shard failed for good."""
        while True:
            done = len(self.counter.done())
            on_count(done)
            if done >= len(self.attemptids):
                return
            failure = self.jobdir.failure()
            if failure is not None:
                raise JobFailed(f"shard {failure.shard_index} failed: {failure.message}")
            await asyncio.sleep(self.poll_sec)

    async def _tick(self, on_tick: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.poll_sec)
            await on_tick()
