"""Token Secrets whose ArchiveJob is gone: the last holder of the token tells Moodle.

A deleted ArchiveJob (queued, running, or final with its end still undelivered) leaves
its token Secret behind: the Secret is not owned by it, and carries the `DeliveryFacts`
(protocol, Moodle URLs, job id, token deadline) in an annotation. This delivers what the
ArchiveJob still owed (FAILED for one that had not ended) with the same plan and backoff
as `delivery`, then deletes the Secret. What is owed and how far its delivery got (tries,
the last one's time, the artifact of an owed processing call) is a second annotation on
the Secret (`DutyState`), written when the duty is adopted from the ArchiveJob's DELETED
event and after every try, so a restarted operator keeps the schedule. A Secret found by
housekeeping alone, without it, starts at try 0 with FAILED. Events go to the gone
ArchiveJob's name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moodle_archive_job.final_status import PendingArtifact, Verdict
from moodle_archive_job.moodle_api import JobStatus

from ..archivejob import ANNOTATION_DELIVERY, ANNOTATION_DELIVERY_STATE, DeliveryFacts
from .conditions import timestamp
from .decide import EventSpec
from .delivery import EVENTS, Backoff, Duty, plan, tried_message
from .kube import Kube, KubeError
from .metrics import OperatorMetrics
from .moodle_notify import tell_moodle
from .queueing import is_final
from .settings import OperatorSettings
from .workqueue import KeyedLocks

log = logging.getLogger("moodle_archive_operator.operator")

UNKNOWN_JOB = frozenset({"E_UPDATE_FAILED", "E_JOB_NOT_FOUND", "E_TASK_NOT_FOUND"})

PostEvents = Callable[[dict[str, Any], list[EventSpec]], Awaitable[None]]


def _annotations(secret: dict[str, Any]) -> dict[str, str]:
    return (secret.get("metadata") or {}).get("annotations") or {}


def facts_of(secret: dict[str, Any]) -> DeliveryFacts | None:
    raw = _annotations(secret).get(ANNOTATION_DELIVERY)
    if not raw:
        return None
    try:
        return DeliveryFacts.model_validate_json(raw)
    except ValidationError:
        return None


class DutyState(BaseModel):
    """The annotation `ANNOTATION_DELIVERY_STATE` (nothing secret: the artifact is a draft
    file's ids, reachable only with the token). `nextAttempt` is for people reading the
    Secret; the plan derives it again from the rest."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    status: Literal["FAILED", "TIMEOUT", "FINISHED"]
    attempts: int = Field(default=0, ge=0)
    last_attempt: datetime | None = Field(default=None, alias="lastAttempt")
    next_attempt: str | None = Field(default=None, alias="nextAttempt")
    artifact: PendingArtifact | None = None


def orphan_duty(secret: dict[str, Any], facts: DeliveryFacts) -> Duty:
    """The duty a token Secret carries: its recorded state, else FAILED from try 0."""
    duty = Duty(JobStatus.FAILED, facts.deadline, facts.archivejob_uid)
    raw = _annotations(secret).get(ANNOTATION_DELIVERY_STATE)
    if not raw:
        return duty
    try:
        state = DutyState.model_validate_json(raw)
    except ValidationError:
        return duty
    status = JobStatus(state.status)
    if status is JobStatus.FINISHED and state.artifact is None:
        status = JobStatus.FAILED  # cannot process what is not described (as `Duty.of`)
    return Duty(status, facts.deadline, facts.archivejob_uid, state.artifact,
                state.attempts, state.last_attempt)  # fmt: skip


def owed_status(secret: dict[str, Any]) -> str | None:
    """What a token Secret of a deleted ArchiveJob still owes Moodle (None: no facts)."""
    facts = facts_of(secret)
    return None if facts is None else str(orphan_duty(secret, facts).status)


def state_annotation(duty: Duty, now: datetime, backoff: Backoff) -> dict[str, str | None]:
    """The annotation recording `duty` (after a try at `now`, or as adopted)."""
    step = plan(duty, now, backoff)
    next_at = now + timedelta(seconds=step.after_sec) if step.action == "wait" else now
    state = DutyState(
        status=str(duty.status),  # type: ignore[arg-type]
        attempts=duty.attempts,
        last_attempt=duty.last_attempt,
        next_attempt=timestamp(next_at) if step.action != "expire" else None,
        artifact=duty.artifact,
    )
    raw = state.model_dump_json(by_alias=True, exclude_none=True)
    return {ANNOTATION_DELIVERY_STATE: raw}


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
        self._locks = KeyedLocks()
        # Duties whose annotation could not be written (the API server refused the patch):
        # kept here until a write succeeds, so that an owed processing call is not turned
        # into FAILED by this process meanwhile.
        self._unrecorded: dict[str, Duty] = {}

    async def adopt(self, archivejob: dict[str, Any], secret: dict[str, Any]) -> None:
        """Take over the duty of a just deleted ArchiveJob (its last state, from the event):
        recorded on its token Secret."""
        facts = facts_of(secret)
        if facts is None:
            return
        if is_final(archivejob):
            duty = Duty.of(archivejob)  # None: it owed nothing
        else:
            duty = Duty(JobStatus.FAILED, facts.deadline, facts.archivejob_uid)
        if duty is not None:
            name = secret["metadata"]["name"]
            async with self._locks.hold(name):
                await self._record(name, duty)

    async def visit(self, secret: dict[str, Any]) -> bool:
        """One step for an orphaned token Secret (listed as metadata); True once deleted."""
        name = secret["metadata"]["name"]
        async with self._locks.hold(name):
            fresh = await self.kube.get_metadata("Secret", name)  # its latest state
            if fresh is None:
                return True
            facts = facts_of(fresh)
            if facts is None:  # no facts (made before they existed): nothing to tell with
                return await self._delete(name)
            duty = orphan_duty(fresh, facts)
            kept = self._unrecorded.get(name)
            if kept is not None and kept.attempts >= duty.attempts:
                duty = kept
            step = plan(duty, self.clock(), self.backoff)
            if step.action == "wait":
                return False
            if step.action == "expire":
                self.metrics.deliveries_abandoned.labels(str(duty.status), "TokenExpired").inc()
                await self._event(facts, "Warning", "TokenExpired",
                                  f"gave up telling Moodle {duty.status} after "
                                  f"{duty.attempts} tries: the token expired")  # fmt: skip
                return await self._delete(name)
            return await self._try(name, facts, duty)

    async def _try(self, name: str, facts: DeliveryFacts, duty: Duty) -> bool:
        answer = await tell_moodle(
            self.kube, name, facts.task(), facts.job_id, duty.status,
            self.settings.moodle_notify_timeout_sec, duty.artifact,
        )  # fmt: skip
        self.metrics.moodle_notifications.labels(str(duty.status), answer).inc()
        done = duty.tried(self.clock())
        result, message = tried_message(done, answer)
        log.info("final status of a deleted ArchiveJob sent to Moodle", extra={"fields": {
            "archivejob": facts.archivejob, "status": str(duty.status), "answer": answer,
            "attempt": done.attempts}})  # fmt: skip
        kind, reason = EVENTS[result]
        if result is Verdict.RETRY and answer in UNKNOWN_JOB:
            # Moodle never registered the job (a task the gateway refused after storing its
            # Secret) or dropped it: nothing to tell, unlike for a live ArchiveJob, where
            # this may be Moodle's database failing.
            result, kind, reason = Verdict.REFUSED, "Normal", "MoodleUnknownJob"
            message = f"Moodle does not know this job ({answer}); nothing to tell"
        elif result is Verdict.REFUSED:
            self.metrics.deliveries_abandoned.labels(str(duty.status), "Refused").inc()
        if result is Verdict.RETRY:
            await self._record(name, done)  # first: the schedule survives a restart
        await self._event(facts, kind, reason, f"{message} (the ArchiveJob was deleted)")
        return False if result is Verdict.RETRY else await self._delete(name)

    async def _record(self, name: str, duty: Duty) -> None:
        try:
            await self.kube.patch_annotations(
                "Secret", name, state_annotation(duty, self.clock(), self.backoff)
            )
        except KubeError as exc:  # kept in memory; after a restart the next try comes sooner
            self._unrecorded[name] = duty
            log.warning("could not record the delivery state on the token Secret",
                        extra={"fields": {"secret": name, "status": exc.status}})  # fmt: skip
        else:
            self._unrecorded.pop(name, None)

    async def _delete(self, name: str) -> bool:
        self._unrecorded.pop(name, None)
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
