"""The worker's queue as the reference worker reports it, computed from ArchiveJobs.

All state is in the API server: these pure functions read a list of ArchiveJob
objects (plain dicts, read tolerantly: a hand-edited object must not break
`/status`) and answer what `/status`, `/status/<id>` and the capacity check need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..archivejob import FINAL_PHASES, LABEL_JOB_ID, Phase

# Phases in which a job holds one of the `maxParallelJobs` slots.
_PROCESSING_PHASES = frozenset({Phase.RUNNING, Phase.WAITING_FOR_BACKUP, Phase.FINALIZING})
_FINAL = frozenset(p.value for p in FINAL_PHASES)

# ArchiveJob phase -> the reference worker's JobStatus string (spec 4.1).
JOB_STATUS_BY_PHASE: dict[str, str] = {
    Phase.PENDING: "AWAITING_PROCESSING",
    Phase.QUEUED: "AWAITING_PROCESSING",
    Phase.RUNNING: "RUNNING",
    Phase.WAITING_FOR_BACKUP: "WAITING_FOR_BACKUP",
    Phase.FINALIZING: "FINALIZING",
    Phase.SUCCEEDED: "FINISHED",
    Phase.FAILED: "FAILED",
    Phase.TIMED_OUT: "TIMEOUT",
    # The reference worker cannot cancel; local_archiving calls this state CANCELED.
    Phase.CANCELLED: "CANCELED",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def phase_of(obj: dict[str, Any]) -> str:
    phase = _dict(obj.get("status")).get("phase")
    return phase if isinstance(phase, str) and phase else Phase.PENDING.value


def job_id_of(obj: dict[str, Any]) -> str:
    meta = _dict(obj.get("metadata"))
    job_id = _dict(meta.get("labels")).get(LABEL_JOB_ID) or _dict(obj.get("spec")).get("jobId")
    return str(job_id or meta.get("name", ""))


def is_final(obj: dict[str, Any]) -> bool:
    return phase_of(obj) in _FINAL


def _admitted(obj: dict[str, Any]) -> bool:
    conditions = _dict(obj.get("status")).get("conditions")
    if not isinstance(conditions, list):
        return False
    return any(
        isinstance(c, dict) and c.get("type") == "Admitted" and c.get("status") == "True"
        for c in conditions
    )


def is_processing(obj: dict[str, Any]) -> bool:
    return not is_final(obj) and (phase_of(obj) in _PROCESSING_PHASES or _admitted(obj))


def queue_order_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    """FIFO order: server-side creation second, then the gateway's precise submit time."""
    meta = _dict(obj.get("metadata"))
    submitted = _dict(obj.get("spec")).get("submittedAt")
    return (
        str(meta.get("creationTimestamp") or ""),
        submitted if isinstance(submitted, str) else "",
        str(meta.get("name") or ""),
    )


def is_live(obj: dict[str, Any]) -> bool:
    """Holds a slot or a queue place: not final, not being deleted."""
    return not is_final(obj) and not _dict(obj.get("metadata")).get("deletionTimestamp")


def live_jobs(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Non-final ArchiveJobs (not being deleted) in queue order."""
    return sorted(filter(is_live, objs), key=queue_order_key)


@dataclass(frozen=True)
class QueueView:
    processing: list[str]
    queued: list[str]

    @property
    def live(self) -> int:
        return len(self.processing) + len(self.queued)


def queue_view(objs: list[dict[str, Any]]) -> QueueView:
    live = live_jobs(objs)
    return QueueView(
        processing=[job_id_of(o) for o in live if is_processing(o)],
        queued=[job_id_of(o) for o in live if not is_processing(o)],
    )


def worker_status(view: QueueView, jobs_max: int, queue_max: int) -> str:
    """IDLE / ACTIVE / BUSY / UNAVAILABLE as the reference worker's `/status` (spec 2.6)."""
    if view.live >= jobs_max + queue_max:
        return "UNAVAILABLE"
    if not view.live:
        return "IDLE"
    if len(view.processing) >= jobs_max and view.queued:
        return "BUSY"
    # Jobs waiting while slots are free are being admitted right now: still ACTIVE.
    return "ACTIVE"


def job_status_string(obj: dict[str, Any]) -> str:
    return JOB_STATUS_BY_PHASE.get(phase_of(obj), "UNKNOWN")
