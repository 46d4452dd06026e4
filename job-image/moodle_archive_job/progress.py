"""Where a running job's progress goes: Moodle (rate-limited), the terminal or logs, the ArchiveJob.

The pipeline emits `ProgressEvent`s to every `ProgressSink`. Sinks must be cheap
and must not raise; a sink that talks to the network does so in the background.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol, TextIO

from pydantic import BaseModel, Field

from .final_status import PendingArtifact

log = logging.getLogger(__name__)


class Phase(StrEnum):
    RUNNING = "Running"
    WAITING_FOR_BACKUP = "WaitingForBackup"
    FINALIZING = "Finalizing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"


class Artifact(BaseModel):
    name: str
    size: int
    sha256: str


class ShardProgress(BaseModel):
    """One shard's own share of a sharded job (its slice of the attempts)."""

    index: int
    attempts_done: int = 0
    attempts_total: int = 0
    phase: Phase = Phase.RUNNING
    attempts_resumed: int = 0
    attempts_rerendered: int = 0


class ProgressEvent(BaseModel):
    phase: Phase
    attempts_done: int = 0
    attempts_total: int = 0
    # Attempts taken from verified checkpoints of an earlier pod, and attempts whose
    # checkpoint was found torn or corrupt and rendered again.
    attempts_resumed: int = 0
    attempts_rerendered: int = 0
    # Set in sharded jobs; a non-zero shard's events describe only its own slice.
    shard: ShardProgress | None = None
    progress: int = 0
    moodle_status: str | None = None
    # A final status the runner could not deliver (FINISHED: the upload's processing call).
    pending_moodle_status: str | None = None
    pending_artifact: PendingArtifact | None = None
    message: str = ""
    artifact: Artifact | None = None
    # Ids of attempts that failed; one-line warnings (a page kept without PDF/A, ...).
    failed_attempts: list[int] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class ProgressSink(Protocol):
    def emit(self, event: ProgressEvent) -> None: ...


def percent(done: int, total: int) -> int:
    return round(100 * done / total) if total else 0


class MoodleProgressLimiter:
    """Spec 4.3: a RUNNING progress update only if `interval` passed since the last status call."""

    def __init__(self, interval_sec: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval_sec
        self._clock = clock
        self._last = float("-inf")

    def touch(self) -> None:
        """Record a status call made for another reason."""
        self._last = self._clock()

    def due(self) -> bool:
        return self._clock() - self._last >= self.interval


class LogSink:
    """JSON log lines for non-interactive runs (a pod's log)."""

    def __init__(self) -> None:
        self._last: tuple[Phase, int, str] | None = None

    def emit(self, event: ProgressEvent) -> None:
        key = (event.phase, event.attempts_done, event.message)
        if key == self._last:
            return
        self._last = key
        log.info(
            event.message or str(event.phase),
            extra={"fields": {
                "phase": str(event.phase),
                "attempts_done": event.attempts_done,
                "attempts_total": event.attempts_total,
                "progress": event.progress,
            }},
        )


class TerminalSink:
    """A one-line progress bar on a terminal."""

    WIDTH = 30

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._open = False

    def emit(self, event: ProgressEvent) -> None:
        filled = self.WIDTH * event.progress // 100
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = (
            f"\r[{bar}] {event.progress:3d}%  {event.attempts_done}/{event.attempts_total} "
            f"attempts  {event.phase}: {event.message}"
        )
        self.stream.write(line[:160].ljust(100))
        self._open = True
        if event.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT):
            self.stream.write("\n")
            self._open = False
        self.stream.flush()


class FanOut:
    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = sinks

    def emit(self, event: ProgressEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a broken sink must never fail the job
                log.exception("progress sink failed")
