"""Carrying out the delivery duty of a final ArchiveJob: plan, maybe one try, write it down.

Called by the reconciler for every final ArchiveJob (under its lock, so never two tries
at once). Answers how long to wait before looking again, or None once nothing is owed
(then the token Secret may go).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from moodle_archive_job.final_status import Verdict, verdict

from ..archivejob import ArchiveJobSpec, task_from_spec
from .decide import EventSpec
from .delivery import Backoff, Duty, Outcome, attempted, expired, plan, settled
from .kube import Kube
from .metrics import OperatorMetrics
from .moodle_notify import tell_moodle
from .settings import OperatorSettings

log = logging.getLogger("moodle_archive_operator.operator")

PostEvents = Callable[[dict[str, Any], list[EventSpec]], Awaitable[None]]


def backoff_of(settings: OperatorSettings) -> Backoff:
    return Backoff(
        base_sec=settings.moodle_redelivery_base_sec, cap_sec=settings.moodle_redelivery_max_sec
    )


class DeliveryDuty:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        post_events: PostEvents,
        clock: Callable[[], datetime],
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.post_events = post_events
        self.clock = clock
        self.backoff = backoff_of(settings)

    async def run(self, archivejob: dict[str, Any]) -> float | None:
        now = self.clock()
        duty = Duty.of(archivejob)
        if duty is None:
            outcome = settled(archivejob, now)
            if outcome is not None:
                await self._write(archivejob, outcome)
            return None
        step = plan(duty, now, self.backoff)
        if step.action == "wait":
            return max(0.5, step.after_sec)
        if step.action == "expire":
            outcome = expired(archivejob, duty, now)
            self.metrics.deliveries_abandoned.labels(str(duty.status), "TokenExpired").inc()
        else:
            answer = await self._try(archivejob, duty)
            outcome = attempted(archivejob, duty, answer, now, self.backoff)
            if verdict(answer) is Verdict.REFUSED:
                self.metrics.deliveries_abandoned.labels(str(duty.status), "Refused").inc()
        updated = await self._write(archivejob, outcome)
        if outcome.closed or updated is None:
            return None
        next_duty = Duty.of(updated)
        if next_duty is None:
            return None
        step = plan(next_duty, self.clock(), self.backoff)
        return max(0.5, step.after_sec)

    async def _try(self, archivejob: dict[str, Any], duty: Duty) -> str:
        spec = archivejob["spec"]
        task = task_from_spec(ArchiveJobSpec.model_validate(spec))
        answer = await tell_moodle(
            self.kube, spec["tokenSecretName"], task, spec["jobId"], duty.status,
            self.settings.moodle_notify_timeout_sec, duty.artifact,
        )  # fmt: skip
        self.metrics.moodle_notifications.labels(str(duty.status), answer).inc()
        log.info("final status sent to Moodle", extra={"fields": {
            "archivejob": archivejob["metadata"]["name"], "status": str(duty.status),
            "answer": answer, "attempt": duty.attempts + 1}})  # fmt: skip
        return answer

    async def _write(self, archivejob: dict[str, Any], outcome: Outcome) -> dict[str, Any] | None:
        updated = await self.kube.patch_status(archivejob["metadata"]["name"], outcome.patch)
        await self.post_events(archivejob, outcome.events)
        return updated
