"""Token Secrets whose ArchiveJob is gone: the last holder of the token tells Moodle.

A deleted ArchiveJob (queued, running, or final with its end still undelivered) leaves
its token Secret behind: the Secret is not owned by it, and carries the `DeliveryFacts`
(protocol, Moodle URLs, job id, token deadline) in an annotation. This delivers what the
ArchiveJob still owed (FAILED for one that had not ended) with the same plan and backoff
as `delivery`, then deletes the Secret. The ArchiveJob's own duty state comes with its
DELETED event; what is found by housekeeping alone starts at try 0. State between tries
is kept in memory (after an operator restart the next try simply comes sooner: the
deadline, from the Secret, stays the same); Events go to the gone ArchiveJob's name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from moodle_archive_job.final_status import Verdict
from moodle_archive_job.moodle_api import JobStatus

from ..archivejob import ANNOTATION_DELIVERY, DeliveryFacts
from .decide import EventSpec
from .delivery import EVENTS, Backoff, Duty, plan, tried_message
from .kube import Kube
from .metrics import OperatorMetrics
from .moodle_notify import tell_moodle
from .queueing import is_final
from .settings import OperatorSettings
from .workqueue import KeyedLocks

log = logging.getLogger("moodle_archive_operator.operator")

UNKNOWN_JOB = frozenset({"E_UPDATE_FAILED", "E_JOB_NOT_FOUND", "E_TASK_NOT_FOUND"})

PostEvents = Callable[[dict[str, Any], list[EventSpec]], Awaitable[None]]


def facts_of(secret: dict[str, Any]) -> DeliveryFacts | None:
    raw = ((secret.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DELIVERY)
    if not raw:
        return None
    try:
        return DeliveryFacts.model_validate_json(raw)
    except ValidationError:
        return None


@dataclass(frozen=True)
class _Orphan:
    facts: DeliveryFacts
    duty: Duty


class OrphanedTokens:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        post_events: PostEvents,
        backoff: Backoff,
        clock: Callable[[], datetime],
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.post_events = post_events
        self.backoff = backoff
        self.clock = clock
        self._owed: dict[str, _Orphan] = {}
        self._locks = KeyedLocks()

    def adopt(self, archivejob: dict[str, Any], secret: dict[str, Any]) -> None:
        """Take over the duty of a just deleted ArchiveJob (its last state, from the event)."""
        facts = facts_of(secret)
        if facts is None:
            return
        if is_final(archivejob):
            duty = Duty.of(archivejob)  # None: it owed nothing
        else:
            duty = Duty(JobStatus.FAILED, facts.deadline, facts.archivejob_uid)
        if duty is not None:
            self._owed[secret["metadata"]["name"]] = _Orphan(facts, duty)

    async def visit(self, secret: dict[str, Any]) -> bool:
        """One step for an orphaned token Secret (listed as metadata); True once deleted."""
        name = secret["metadata"]["name"]
        async with self._locks.hold(name):
            orphan = self._owed.get(name)
            facts = orphan.facts if orphan else facts_of(secret)
            if facts is None:  # no facts (made before they existed): nothing to tell with
                return await self._delete(name)
            if orphan is None:
                duty = Duty(JobStatus.FAILED, facts.deadline, facts.archivejob_uid)
                orphan = _Orphan(facts, duty)
            step = plan(orphan.duty, self.clock(), self.backoff)
            if step.action == "wait":
                self._owed[name] = orphan
                return False
            if step.action == "expire":
                await self._event(facts, "Warning", "TokenExpired",
                                  f"gave up telling Moodle {orphan.duty.status} after "
                                  f"{orphan.duty.attempts} tries: the token expired")  # fmt: skip
                return await self._delete(name)
            return await self._try(name, orphan)

    async def _try(self, name: str, orphan: _Orphan) -> bool:
        facts, duty = orphan.facts, orphan.duty
        answer = await tell_moodle(
            self.kube, name, facts.task(), facts.job_id, duty.status,
            self.settings.moodle_notify_timeout_sec, duty.artifact,
        )  # fmt: skip
        self.metrics.moodle_notifications.labels(str(duty.status), answer).inc()
        done = duty.tried(self.clock())
        result, message = tried_message(done, answer)
        log.info("told Moodle the final status of a deleted ArchiveJob", extra={"fields": {
            "archivejob": facts.archivejob, "status": str(duty.status), "answer": answer,
            "attempt": done.attempts}})  # fmt: skip
        kind, reason = EVENTS[result]
        if result is Verdict.RETRY and answer in UNKNOWN_JOB:
            # Moodle never registered the job (a task the gateway refused after storing its
            # Secret) or dropped it: nothing to tell, unlike for a live ArchiveJob, where
            # this may be Moodle's database failing.
            result, kind, reason = Verdict.REFUSED, "Normal", "MoodleUnknownJob"
            message = f"Moodle does not know this job ({answer}); nothing to tell"
        await self._event(facts, kind, reason, f"{message} (the ArchiveJob was deleted)")
        if result is Verdict.RETRY:
            self._owed[name] = replace(orphan, duty=done)
            return False
        return await self._delete(name)

    async def _delete(self, name: str) -> bool:
        self._owed.pop(name, None)
        await self.kube.delete("Secret", name)
        log.info("token Secret of a deleted ArchiveJob deleted",
                 extra={"fields": {"secret": name}})  # fmt: skip
        return True

    async def _event(
        self, facts: DeliveryFacts, kind: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        gone = {"metadata": {"name": facts.archivejob, "namespace": self.kube.namespace,
                             "uid": facts.archivejob_uid}}  # fmt: skip
        await self.post_events(gone, [EventSpec(kind, reason, message)])
