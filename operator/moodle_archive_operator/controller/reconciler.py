"""Reconciling one ArchiveJob: read it, its Job, pods and FailedCreate Events; decide; act.

Called by the work queue one name at a time (and under that name's lock, which the
admitter shares). Final states are reached once: the Job is stopped if needed, what
Moodle must still be told becomes `pendingMoodleStatus`, the status is patched and the
ArchiveJob is labelled finished. From then on every reconcile carries out the delivery
duty (`duty`): the token Secret is deleted as soon as Moodle owes nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..archivejob import LABEL_FINISHED, build_event
from .conditions import find, parse_time, utc_now
from .decide import Decision, EventSpec, Final, decide
from .delivery import Duty
from .duty import DeliveryDuty
from .kube import Kube, KubeError
from .metrics import OperatorMetrics
from .naming import child_name
from .observe import Observation, observe, with_work_volume
from .queueing import is_admitted, is_final
from .settings import OperatorSettings
from .workqueue import WorkQueue

log = logging.getLogger("moodle_archive_operator.operator")

EVENT_COMPONENT = "moodle-archiver-operator"


def _owned_by(obj: dict[str, Any], archivejob: dict[str, Any]) -> bool:
    uid = archivejob["metadata"].get("uid")
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        queue: WorkQueue,
        wake_admission: Callable[[], None],
        clock: Callable[[], datetime] = utc_now,
        host_busy: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.queue = queue
        self.wake_admission = wake_admission
        self.clock = clock
        # Why admission holds a waiting ArchiveJob back for its Moodle host (the admitter's).
        self.host_busy = host_busy
        self.duty = DeliveryDuty(kube, settings, metrics, self.post_events, clock)

    async def reconcile(self, name: str) -> None:
        archivejob = await self.kube.get("ArchiveJob", name)
        if archivejob is None or archivejob["metadata"].get("deletionTimestamp"):
            self.queue.forget(name)
            return
        if is_final(archivejob):
            await self.settle(archivejob)
            return
        obs = await self._observe(archivejob)
        secret = True
        if obs is None and not is_admitted(archivejob):
            secret = await self.kube.secret_exists(archivejob["spec"]["tokenSecretName"])
        busy = self.host_busy(name) if obs is None else None
        decision = decide(archivejob, obs, secret, self.clock(), self.settings, busy)
        if decision.final is not None:
            await self.finish(archivejob, decision)
            return
        if decision.patch:
            await self.kube.patch_status(name, decision.patch)
        await self.post_events(archivejob, decision.events)
        if not is_admitted(archivejob) and obs is None:
            self.wake_admission()
        if decision.requeue_after is not None:
            self.queue.add_after(name, decision.requeue_after)

    async def _observe(self, archivejob: dict[str, Any]) -> Observation | None:
        job = await self.kube.get("Job", child_name(archivejob["metadata"]["name"]))
        if job is None or not _owned_by(job, archivejob):
            return None  # none yet, or a previous ArchiveJob's of the same name (being collected)
        uid = job["metadata"]["uid"]
        pods = await self.kube.list(
            "Pod", label_selector=f"batch.kubernetes.io/controller-uid={uid}"
        )
        failed_create: list[str] = []
        if not pods and not any(
            c.get("status") == "True" for c in (job.get("status") or {}).get("conditions") or []
        ):
            events = await self.kube.list(
                "Event",
                field_selector=f"involvedObject.kind=Job,involvedObject.uid={uid},reason=FailedCreate",
            )
            events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
            failed_create = [str(e.get("message") or "") for e in events]
        obs = observe(job, pods, failed_create)
        claim_name = (archivejob.get("status") or {}).get("workVolume")
        if claim_name and not obs.running_now and obs.job_finished is None and not obs.scheduled:
            obs = await self._with_work_volume(obs, str(claim_name))
        return obs

    async def _with_work_volume(self, obs: Observation, claim_name: str) -> Observation:
        claim = await self.kube.get("PersistentVolumeClaim", claim_name)
        warnings: list[str] = []
        if claim is None or (claim.get("status") or {}).get("phase") == "Pending":
            events = await self.kube.list("Event", field_selector=(
                "involvedObject.kind=PersistentVolumeClaim,"
                f"involvedObject.name={claim_name},type=Warning"))  # fmt: skip
            events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
            warnings = [f"{e.get('reason')}: {e.get('message')}" for e in events]
        return with_work_volume(obs, claim_name, claim, warnings)

    # --- final states --------------------------------------------------------------------------

    async def finish(self, archivejob: dict[str, Any], decision: Decision) -> None:
        final = decision.final
        assert final is not None
        name = archivejob["metadata"]["name"]
        if final.stop_job:
            # Foreground: the Job (and its slot) goes only once its pods are gone.
            await self.kube.delete("Job", child_name(name), propagation="Foreground")
        patch = dict(decision.patch)
        events = list(decision.events)
        if final.notify is not None:
            patch["pendingMoodleStatus"] = str(final.notify)  # delivered by `settle`, at once
        updated = await self.kube.patch_status(name, patch) if patch else archivejob
        fields = {"archivejob": name, "reason": final.reason, "detail": final.message}
        log.info("ArchiveJob %s", final.phase.value, extra={"fields": fields})
        await self.post_events(archivejob, events)
        self._count(archivejob, final)
        self.wake_admission()
        if updated is not None:
            await self.settle(updated)

    def _count(self, archivejob: dict[str, Any], final: Final) -> None:
        self.metrics.finished.labels(final.phase.value, final.reason).inc()
        status = archivejob.get("status") or {}
        admitted = find(status.get("conditions") or [], "Admitted")
        since = parse_time(status.get("startTime")) or (
            parse_time(admitted.get("lastTransitionTime")) if admitted else None
        )
        if since is not None:
            seconds = (self.clock() - since).total_seconds()
            self.metrics.run_duration.labels(final.phase.value).observe(max(0.0, seconds))

    async def settle(self, archivejob: dict[str, Any]) -> None:
        """A final ArchiveJob: deliver what Moodle is owed (or wait for the next try), then
        clean up. Labelled finished either way: it no longer counts as a live job."""
        owed = Duty.of(archivejob) is not None
        requeue = await self.duty.run(archivejob)
        if requeue is None:
            await self.clean_up(archivejob, force=owed)
            return
        meta = archivejob["metadata"]
        if (meta.get("labels") or {}).get(LABEL_FINISHED) != "true":
            await self.kube.patch_labels("ArchiveJob", meta["name"], {LABEL_FINISHED: "true"})
        self.queue.add_after(meta["name"], requeue)

    async def clean_up(self, archivejob: dict[str, Any], force: bool = False) -> None:
        """For a final ArchiveJob that owes Moodle nothing: its token Secret gone, then the
        finished label (idempotent; `force`: also when labelled, as after a duty)."""
        meta = archivejob["metadata"]
        labelled = (meta.get("labels") or {}).get(LABEL_FINISHED) == "true"
        if labelled and not force:
            return
        if await self.kube.delete("Secret", archivejob["spec"]["tokenSecretName"]):
            log.info("token Secret deleted", extra={"fields": {"archivejob": meta["name"]}})
        if not labelled:
            await self.kube.patch_labels("ArchiveJob", meta["name"], {LABEL_FINISHED: "true"})

    async def post_events(self, archivejob: dict[str, Any], events: list[EventSpec]) -> None:
        for spec in events:
            body = build_event(
                archivejob, spec.reason, spec.message, EVENT_COMPONENT, spec.type, self.clock()
            )
            try:
                await self.kube.create_event(body)
            except KubeError as exc:  # an Event is worth a retry of nothing
                log.warning("could not post an Event", extra={"fields": {
                    "archivejob": archivejob["metadata"]["name"], "reason": spec.reason,
                    "status": exc.status}})  # fmt: skip
