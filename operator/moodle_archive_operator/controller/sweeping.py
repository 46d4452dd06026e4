"""What housekeeping deletes: a pure plan over listed objects.

* History: finished ArchiveJobs beyond the newest `max_count`, or finished longer
  ago than `max_age_sec` (0 disables either limit); never one that still owes Moodle
  its end (`pendingMoodleStatus`).
* Orphans: per-job objects (by label) whose ArchiveJob no longer exists.
* Token Secrets: of a finished ArchiveJob that owes Moodle nothing, deleted; of an
  ArchiveJob that is gone, handed to `orphans` (Moodle is told first).
* Work volumes: the PVC of an ArchiveJob finished longer ago than the finished-job
  TTL (the ArchiveJob itself stays as history; its checkpoints need not).
Objects younger than the grace period are left alone: they may be in the middle of
being created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..archivejob import LABEL_ARCHIVEJOB_UID, LABEL_FINISHED
from .conditions import parse_time
from .queueing import queue_key


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _finished_at(archivejob: dict[str, Any]) -> datetime | None:
    status = archivejob.get("status") or {}
    return parse_time(status.get("completionTime")) or parse_time(
        _meta(archivejob).get("creationTimestamp")
    )


def owes_moodle(archivejob: dict[str, Any]) -> bool:
    return bool((archivejob.get("status") or {}).get("pendingMoodleStatus"))


def history_to_delete(
    finished: list[dict[str, Any]], now: datetime, max_count: int, max_age_sec: float
) -> list[str]:
    dated = [
        (aj, _finished_at(aj))
        for aj in finished
        if not _meta(aj).get("deletionTimestamp") and not owes_moodle(aj)
    ]
    # Newest first; within a second (timestamps have no more), the later in queue order.
    dated.sort(key=lambda pair: (pair[1] or now, queue_key(pair[0])), reverse=True)
    doomed = []
    for index, (aj, when) in enumerate(dated):
        too_many = max_count > 0 and index >= max_count
        too_old = (
            max_age_sec > 0 and when is not None and (now - when).total_seconds() > max_age_sec
        )
        if too_many or too_old:
            doomed.append(str(_meta(aj)["name"]))
    return doomed


@dataclass(frozen=True)
class Owners:
    """The ArchiveJobs that exist, by uid, and which of them are finished and owe Moodle
    nothing (`settled`: read from the full objects of finished ArchiveJobs, listed last)."""

    uids: frozenset[str]
    settled_uids: frozenset[str]

    @classmethod
    def of(cls, archivejobs: list[dict[str, Any]], finished: list[dict[str, Any]]) -> Owners:
        uids = {str(_meta(aj).get("uid")) for aj in archivejobs}
        settled = {
            str(_meta(aj).get("uid"))
            for aj in finished
            if (_meta(aj).get("labels") or {}).get(LABEL_FINISHED) == "true"
            and not owes_moodle(aj)
        }
        return cls(frozenset(uids), frozenset(settled))


def _old_enough(obj: dict[str, Any], now: datetime, grace_sec: float) -> bool:
    created = parse_time(_meta(obj).get("creationTimestamp"))
    return created is None or (now - created).total_seconds() >= grace_sec


def _owner_uids(obj: dict[str, Any]) -> set[str]:
    """By label (token Secrets now) or owner reference (Secrets of older gateways)."""
    uids = {
        str(ref.get("uid"))
        for ref in _meta(obj).get("ownerReferences") or []
        if ref.get("kind") == "ArchiveJob"
    }
    label = (_meta(obj).get("labels") or {}).get(LABEL_ARCHIVEJOB_UID)
    return uids | {str(label)} if label else uids


def orphaned_children(
    children: list[dict[str, Any]], owners: Owners, now: datetime, grace_sec: float
) -> list[str]:
    doomed = []
    for obj in children:
        uid = (_meta(obj).get("labels") or {}).get(LABEL_ARCHIVEJOB_UID)
        if uid not in owners.uids and _old_enough(obj, now, grace_sec):
            doomed.append(str(_meta(obj)["name"]))
    return doomed


def leftover_token_secrets(secrets: list[dict[str, Any]], owners: Owners) -> list[str]:
    """Token Secrets of finished ArchiveJobs that owe Moodle nothing (delete at once)."""
    settled = owners.settled_uids
    return [str(_meta(secret)["name"]) for secret in secrets if _owner_uids(secret) & settled]


def orphaned_token_secrets(
    secrets: list[dict[str, Any]], owners: Owners, now: datetime, grace_sec: float
) -> list[dict[str, Any]]:
    """Token Secrets whose ArchiveJob is gone (Moodle may still have to be told)."""
    return [
        secret
        for secret in secrets
        if not _owner_uids(secret) & owners.uids and _old_enough(secret, now, grace_sec)
    ]


def expired_work_volumes(
    claims: list[dict[str, Any]], finished: list[dict[str, Any]], now: datetime, ttl_sec: float
) -> list[str]:
    """Work volume claims whose ArchiveJob finished more than `ttl_sec` ago."""
    done_at = {
        str(_meta(aj).get("uid")): when
        for aj in finished
        if (when := parse_time((aj.get("status") or {}).get("completionTime"))) is not None
    }
    doomed = []
    for claim in claims:
        meta = _meta(claim)
        when = done_at.get(str((meta.get("labels") or {}).get(LABEL_ARCHIVEJOB_UID)))
        expired = when is not None and (now - when).total_seconds() >= ttl_sec
        if expired and not meta.get("deletionTimestamp"):
            doomed.append(str(meta["name"]))
    return doomed
