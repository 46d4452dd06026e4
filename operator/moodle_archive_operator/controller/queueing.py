"""Which ArchiveJobs hold a slot and which wait, in FIFO order: a pure plan from API state.

A slot is held by every Job of ours that has not finished (so a Job being stopped
still counts until it is gone) and by every admitted, non-final ArchiveJob that has
no Job at all (yet, or any more). An ArchiveJob whose Job has finished frees its slot
at once, before the reconciler has written its final state.
Waiting ArchiveJobs are admitted oldest first: by creationTimestamp, then the
gateway's sub-second `spec.submittedAt`, then name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..archivejob import FINAL_PHASES
from .conditions import is_true
from .naming import owner_name
from .observe import is_job_finished

_FINAL = frozenset(p.value for p in FINAL_PHASES)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def queue_key(archivejob: dict[str, Any]) -> tuple[str, str, str]:
    meta, spec = _dict(archivejob.get("metadata")), _dict(archivejob.get("spec"))
    submitted = spec.get("submittedAt")
    return (
        str(meta.get("creationTimestamp") or ""),
        submitted if isinstance(submitted, str) else "",
        str(meta.get("name") or ""),
    )


def is_final(archivejob: dict[str, Any]) -> bool:
    return _dict(archivejob.get("status")).get("phase") in _FINAL


def is_admitted(archivejob: dict[str, Any]) -> bool:
    conditions = _dict(archivejob.get("status")).get("conditions")
    return isinstance(conditions, list) and is_true(conditions, "Admitted")


@dataclass(frozen=True)
class AdmissionPlan:
    holders: frozenset[str]
    # Waiting ArchiveJobs, oldest first; the first `free` of them may be admitted now.
    waiting: list[dict[str, Any]]
    free: int

    @property
    def admit(self) -> list[dict[str, Any]]:
        return self.waiting[: self.free]


def plan_admission(
    archivejobs: list[dict[str, Any]], jobs: list[dict[str, Any]], max_parallel: int
) -> AdmissionPlan:
    with_job = {name for name in (owner_name(j) for j in jobs) if name}
    holders = {name for job in jobs if not is_job_finished(job) and (name := owner_name(job))}
    waiting = []
    for aj in archivejobs:
        meta = _dict(aj.get("metadata"))
        name = str(meta.get("name"))
        if is_final(aj) or meta.get("deletionTimestamp"):
            continue
        if is_admitted(aj):
            if name not in with_job:
                holders.add(name)
        elif name not in with_job and not _dict(aj.get("spec")).get("cancelRequested"):
            waiting.append(aj)
    waiting.sort(key=queue_key)
    return AdmissionPlan(
        holders=frozenset(holders), waiting=waiting, free=max(0, max_parallel - len(holders))
    )
