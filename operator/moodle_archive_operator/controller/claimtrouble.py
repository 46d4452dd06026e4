"""A work volume whose PersistentVolumeClaim cannot be created: retry or give up, a pure plan.

A refusal that may pass (no answer, 5xx, 429 throttling, a ResourceQuota that other jobs'
volumes will free) is retried with capped backoff, the ArchiveJob staying Queued with
reason `WorkVolumeCreateFailed` and the API's message; one that cannot pass (invalid,
forbidden, no such namespace) ends it Failed at once, and so does a passing one that has
not passed within the pending timeout. The account of the tries lives in the ArchiveJob's
`status.workVolumeCreate`, so a restarted operator keeps the schedule. (A claim that is
created but never bound, e.g. its StorageClass is missing, is `WorkVolumePending`, see
observe.with_work_volume.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from moodle_archive_job.reasons import one_line

from .backoff import Backoff
from .conditions import parse_time, timestamp
from .workvolume import WorkVolume

FIELD = "workVolumeCreate"
WORK_VOLUME_CREATE_FAILED = "WorkVolumeCreateFailed"
BACKOFF = Backoff(base_sec=5, cap_sec=60)


@dataclass(frozen=True)
class Refusal:
    """What one create of the claim got from the API server."""

    status: int | None  # None: no answer
    message: str  # the API's Status message ("" if none)

    @property
    def passing(self) -> bool:
        """May a later try succeed without anyone changing anything?"""
        if self.status is None or self.status == 429 or self.status >= 500:
            return True
        # A quota refuses while it is exceeded, or before its controller first counted.
        quota = "exceeded quota" in self.message or "status unknown for quota" in self.message
        return self.status == 403 and quota

    def describe(self, volume: WorkVolume, note: str = "") -> str:
        """One line: the claim, its class and size, then `note`, then the API's message
        (last: it is long, and what is clipped)."""
        said = self.message or (f"HTTP {self.status}" if self.status else "no answer")
        return one_line(
            f"the work volume {volume.claim_name} (StorageClass {volume.storage_class}, "
            f"{volume.size}) could not be created{note}: {said}"
        )


@dataclass(frozen=True)
class Trouble:
    """`status.workVolumeCreate`: the failed tries so far."""

    attempts: int
    first: datetime
    last: datetime
    message: str

    @classmethod
    def of(cls, status: dict[str, Any]) -> Trouble | None:
        raw = status.get(FIELD)
        if not isinstance(raw, dict):
            return None
        first, last = parse_time(raw.get("firstFailure")), parse_time(raw.get("lastFailure"))
        if first is None or last is None:
            return None
        return cls(int(raw.get("attempts") or 1), first, last, str(raw.get("message") or ""))

    def as_status(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "firstFailure": timestamp(self.first),
            "lastFailure": timestamp(self.last),
            "message": self.message,
        }

    def retry_in(self, now: datetime, key: str) -> float:
        """Seconds until the next try is due (0: now)."""
        due = self.last + timedelta(seconds=BACKOFF.delay(self.attempts, key))
        return max(0.0, (due - now).total_seconds())


def key_of(archivejob: dict[str, Any]) -> str:
    """What the backoff's jitter is derived from (the same after a restart)."""
    meta = archivejob.get("metadata") or {}
    return str(meta.get("uid") or meta.get("name"))


def _status(archivejob: dict[str, Any]) -> dict[str, Any]:
    status = archivejob.get("status")
    return status if isinstance(status, dict) else {}


@dataclass(frozen=True)
class ClaimStep:
    # Status fields to write (the account of this try), when it is retried.
    patch: dict[str, Any]
    # A one-line reason to end the ArchiveJob Failed with (None: try again later).
    fail: str | None = None
    retry_after: float | None = None


def after_refusal(
    archivejob: dict[str, Any],
    volume: WorkVolume,
    refusal: Refusal,
    now: datetime,
    limit_sec: float,
) -> ClaimStep:
    """What a refused create of the claim means: fail now, or try again later."""
    before = Trouble.of(_status(archivejob))
    trouble = Trouble(
        attempts=(before.attempts if before else 0) + 1,
        first=before.first if before else now,
        last=now,
        message=refusal.describe(volume),
    )
    if not refusal.passing:
        return ClaimStep({}, fail=trouble.message)
    waited = (now - trouble.first).total_seconds()
    if waited >= limit_sec:
        note = f" (tried {trouble.attempts} times in {waited:.0f} s)"
        return ClaimStep({}, fail=refusal.describe(volume, note))
    return ClaimStep(
        {FIELD: trouble.as_status()}, retry_after=trouble.retry_in(now, key_of(archivejob))
    )


def retry_in(archivejob: dict[str, Any], now: datetime) -> float | None:
    """Seconds until a waiting ArchiveJob's claim may be tried again (None: no failed try;
    0: now)."""
    trouble = Trouble.of(_status(archivejob))
    return None if trouble is None else trouble.retry_in(now, key_of(archivejob))


def waiting_message(status: dict[str, Any], key: str, now: datetime) -> tuple[str, float] | None:
    """The Queued message of a waiting ArchiveJob whose claim was refused, and the seconds
    until its next try (None: it was not refused)."""
    trouble = Trouble.of(status)
    if trouble is None:
        return None
    wait = trouble.retry_in(now, key)
    note = f"retrying in {wait:.0f} s (try {trouble.attempts + 1}): "
    return one_line(note + trouble.message), wait
