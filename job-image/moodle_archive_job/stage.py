"""What the stages of a job (render, wait for shards, finish) share with the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .attempt_outcomes import AttemptOutcomes
from .jobdir import JobDir
from .moodle_api import MoodleApi
from .moodle_client import MoodleClient
from .progress import MoodleProgressLimiter, Phase
from .settings import RunnerSettings
from .task import ArchiveTask

T = TypeVar("T")


class JobFailed(Exception):
    """The job cannot succeed; the message is one line, safe to show."""


class JobRun(Protocol):
    """The running job as its stages see it (implemented by the pipeline)."""

    task: ArchiveTask
    settings: RunnerSettings
    api: MoodleApi
    client: MoodleClient
    jobdir: JobDir
    limiter: MoodleProgressLimiter
    phase: Phase
    outcomes: AttemptOutcomes

    def emit(self, phase: Phase, message: str = "", **extra: Any) -> None: ...

    async def race_retry(self, fn: Callable[..., T], *args: Any) -> T: ...
