"""The admitter: one task that admits waiting ArchiveJobs, oldest first, while slots are free.

Each round lists live ArchiveJobs and our Jobs from the API server (so a restarted
operator counts right), plans with `plan_admission` (slots) and `plan_host_admission`
(renders per Moodle host, with a cap also of pods of ended jobs still stopping), and
admits: under the ArchiveJob's lock it re-reads it,
checks its token Secret exists, plans its layout (work volume, shards), creates the
ServiceAccount, Role, RoleBinding, task ConfigMap, the work volume's PVC and finally
the Job (all owned by the ArchiveJob, all idempotent by name) and marks it Admitted.
Jobs held back by their host's cap are remembered so that the reconciler shows them
Queued with reason MoodleHostBusy. A round runs
when woken (a Job finished, an ArchiveJob appeared or finished) and at least
every `resync_interval_sec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from moodle_archive_job.moodle_api import JobStatus

from ..archivejob import LABEL_FINISHED, Phase
from . import claimtrouble
from .children import (
    build_role,
    build_role_binding,
    build_service_account,
    build_task_config_map,
)
from .conditions import parse_time, utc_now
from .decide import EventSpec, Final, admitted_patch, finish_now
from .hostcap import ALIVE_PODS, lingering_renders, plan_host_admission
from .jobspec import build_job
from .kube import Kube, KubeError
from .layout import JobLayout, plan_layout, recorded_shards
from .metrics import OperatorMetrics
from .naming import CHILD_SELECTOR
from .queueing import is_admitted, is_final, plan_admission
from .reconciler import Reconciler, _owned_by
from .settings import OperatorSettings
from .workqueue import KeyedLocks, WorkQueue
from .workvolume import WorkVolume, build_work_volume_claim

log = logging.getLogger("moodle_archive_operator.operator")

LIVE_SELECTOR = f"{LABEL_FINISHED}!=true"


class Admitter:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        locks: KeyedLocks,
        queue: WorkQueue,
        reconciler: Reconciler,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.locks = locks
        self.queue = queue
        self.reconciler = reconciler
        self.clock = clock
        self._wake = asyncio.Event()
        self._posting: set[asyncio.Task[None]] = set()
        # Waiting ArchiveJobs their Moodle host's cap holds back: name -> why.
        self.host_busy: dict[str, str] = {}
        self.rounds = 0
        self.last_round: datetime | None = None

    def wake(self) -> None:
        self._wake.set()

    def waiting_reason(self, name: str) -> str | None:
        """Why a waiting ArchiveJob is held back by its Moodle host's cap (None: it is not)."""
        return self.host_busy.get(name)

    def renders(self, archivejob: dict[str, Any]) -> int:
        """Attempt renders a job puts on its Moodle: concurrency x shards."""
        if is_admitted(archivejob):
            shards = recorded_shards(archivejob)
        else:
            try:
                shards = plan_layout(archivejob, self.settings).shards
            except (KeyError, ValueError, TypeError):
                shards = 1  # a bad spec is refused when it is admitted
        return self.settings.attempt_concurrency() * shards

    def _note_busy(self, busy: dict[str, str]) -> None:
        changed = {n for n in busy.keys() | self.host_busy.keys()
                   if busy.get(n) != self.host_busy.get(n)}  # fmt: skip
        self.host_busy = busy
        for name in changed:  # their status shows the reason
            self.queue.add(name)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.resync_interval_sec)
            self._wake.clear()
            try:
                await self.round()
            except (KubeError, OSError) as exc:
                log.warning("admission round failed", extra={"fields": {"error": str(exc)}})
                await asyncio.sleep(1.0)
                self._wake.set()

    async def round(self) -> int:
        """One admission round; returns how many ArchiveJobs it admitted."""
        began = time.monotonic()
        cap = self.settings.max_renders_per_moodle_host
        archivejobs, jobs, pods = await asyncio.gather(
            self.kube.list("ArchiveJob", label_selector=LIVE_SELECTOR),
            self.kube.list("Job", label_selector=CHILD_SELECTOR),
            self._alive_pods() if cap > 0 else _nothing(),
        )
        plan = plan_admission(archivejobs, jobs, self.settings.max_parallel_jobs)
        self.metrics.queue_length.set(len(plan.waiting))
        self.metrics.active_jobs.set(len(plan.holders))
        self.metrics.set_live_phases(
            (aj.get("status") or {}).get("phase") or "Pending"
            for aj in archivejobs
            if not is_final(aj)
        )
        now = self.clock()
        # A job whose work volume was refused waits for its next try; later ones go ahead.
        due = [aj for aj in plan.waiting if not claimtrouble.retry_in(aj, now)]
        live = {str(aj["metadata"]["name"]): aj for aj in archivejobs}
        counted = [live[name] for name in sorted(plan.holders) if name in live]
        stopping = lingering_renders(
            pods, (str(aj["metadata"]["name"]) for aj in counted),
            self.settings.attempt_concurrency(),
        )  # fmt: skip
        hosts = plan_host_admission(due, counted, plan.free, cap, self.renders, stopping)
        self._note_busy(hosts.busy)
        admitted = 0
        for candidate in hosts.admit:
            if await self._admit(candidate):
                admitted += 1
        self.rounds += 1
        self.last_round = self.clock()
        log.debug("admission round", extra={"fields": {
            "admitted": admitted, "waiting": len(plan.waiting), "holders": len(plan.holders),
            "ms": round(1000 * (time.monotonic() - began), 1)}})  # fmt: skip
        if admitted:
            self.metrics.queue_length.set(len(plan.waiting) - admitted)
            self.metrics.active_jobs.set(len(plan.holders) + admitted)
        return admitted

    async def _alive_pods(self) -> list[dict[str, Any]]:
        """Our pods that have not terminated (as metadata: owner and Moodle host)."""
        return await self.kube.list_metadata(
            "Pod", label_selector=CHILD_SELECTOR, field_selector=ALIVE_PODS
        )

    async def _admit(self, listed: dict[str, Any]) -> bool:
        name = listed["metadata"]["name"]
        async with self.locks.hold(name):
            # Fresh under the lock (a cancel may have come); the Secret's name is immutable.
            archivejob, secret = await asyncio.gather(
                self.kube.get("ArchiveJob", name),
                self.kube.secret_exists(listed["spec"]["tokenSecretName"]),
            )
            if archivejob is None or not self._eligible(archivejob):
                return False
            if not secret:
                self.queue.add(name)  # the reconciler shows it waiting (and times it out)
                return False
            try:
                layout = plan_layout(archivejob, self.settings)
                children = [
                    build_service_account(archivejob),
                    build_role(archivejob),
                    build_role_binding(archivejob),
                    build_task_config_map(archivejob),
                ]
                claim = (
                    build_work_volume_claim(archivejob, layout.work_volume)
                    if layout.work_volume
                    else None
                )
                job = build_job(archivejob, self.settings, layout)
            except (ValidationError, KeyError, ValueError) as exc:
                await self._refuse(archivejob, exc)
                return False
            # The Job last: its pod needs the ServiceAccount (and the rest) to exist.
            await asyncio.gather(*(self.kube.create(child) for child in children))
            if claim is not None:
                assert layout.work_volume is not None
                try:
                    if not await self._create_owned(claim, archivejob):
                        return False
                except KubeError as exc:
                    await self._claim_refused(archivejob, layout.work_volume, exc)
                    return False
            if not await self.kube.create(job):
                existing = await self.kube.get("Job", job["metadata"]["name"])
                if existing is not None and not _owned_by(existing, archivejob):
                    return False  # an earlier ArchiveJob's Job of the same name, being collected
            now = self.clock()
            job_name = job["metadata"]["name"]
            patch = {**admitted_patch(archivejob, job_name, now), **layout.status_fields()}
            if claimtrouble.FIELD in (archivejob.get("status") or {}):
                patch[claimtrouble.FIELD] = None  # created after all
            await self.kube.patch_status(name, patch)
            self.host_busy.pop(name, None)
            message = f"admitted; created Job {job_name}{_shape(layout)}"
            event = EventSpec("Normal", "Admitted", message)
            task = asyncio.create_task(self.reconciler.post_events(archivejob, [event]))
            self._posting.add(task)  # not waited for: the next admission goes first
            task.add_done_callback(self._posting.discard)
            self._observe_latency(archivejob, now)
            log.info("ArchiveJob admitted", extra={"fields": {"archivejob": name}})
        self.queue.add(name)
        return True

    async def _claim_refused(
        self, archivejob: dict[str, Any], volume: WorkVolume, exc: KubeError
    ) -> None:
        """The API server refused the work volume's claim: fail the ArchiveJob (Moodle told
        by the delivery duty) or note the try and let it wait for the next one."""
        now = self.clock()
        step = claimtrouble.after_refusal(
            archivejob, volume, claimtrouble.Refusal(exc.status, exc.message), now,
            self.settings.pending_timeout_sec,
        )  # fmt: skip
        name = archivejob["metadata"]["name"]
        log.warning("the work volume could not be created", extra={"fields": {
            "archivejob": name, "status": exc.status, "final": step.fail is not None}})  # fmt: skip
        if step.fail is not None:
            final = Final(Phase.FAILED, claimtrouble.WORK_VOLUME_CREATE_FAILED, step.fail,
                          JobStatus.FAILED)  # fmt: skip
            await self.reconciler.finish(archivejob, finish_now(archivejob, final, now))
            return
        await self.kube.patch_status(name, step.patch)
        self.queue.add(name)  # shows why it waits, and wakes admission when the try is due

    async def _create_owned(self, obj: dict[str, Any], archivejob: dict[str, Any]) -> bool:
        """Create; False if one of that name exists that belongs to another (earlier) owner."""
        if await self.kube.create(obj):
            return True
        existing = await self.kube.get(obj["kind"], obj["metadata"]["name"])
        return existing is None or _owned_by(existing, archivejob)

    @staticmethod
    def _eligible(archivejob: dict[str, Any]) -> bool:
        return not (
            is_final(archivejob)
            or is_admitted(archivejob)
            or archivejob["metadata"].get("deletionTimestamp")
            or archivejob["spec"].get("cancelRequested")
        )

    def _observe_latency(self, archivejob: dict[str, Any], now: datetime) -> None:
        since = parse_time(archivejob["spec"].get("submittedAt")) or parse_time(
            archivejob["metadata"].get("creationTimestamp")
        )
        if since is not None:
            self.metrics.admission_latency.observe(max(0.0, (now - since).total_seconds()))

    async def _refuse(self, archivejob: dict[str, Any], exc: Exception) -> None:
        message = f"the ArchiveJob's spec cannot be turned into a job: {type(exc).__name__}"
        final = Final(Phase.FAILED, "InvalidSpec", message, JobStatus.FAILED)
        await self.reconciler.finish(archivejob, finish_now(archivejob, final, self.clock()))


async def _nothing() -> list[dict[str, Any]]:
    return []


def _shape(layout: JobLayout) -> str:
    parts = []
    if layout.shards > 1:
        parts.append(f"{layout.shards} shards")
    if layout.work_volume is not None:
        parts.append(f"work volume {layout.work_volume.claim_name}")
    return f" ({', '.join(parts)})" if parts else ""
