"""The operator's moving parts in one place: work queue, workers, admitter, housekeeper,
resync loop and the metrics server. Kopf's handlers feed it; it owns no state that
the API server does not also have (a restart rebuilds everything from a LIST).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kubernetes.client import ApiClient

from ..archivejob import LABEL_ARCHIVEJOB_UID
from .admission import LIVE_SELECTOR, Admitter
from .delivery import Duty
from .duty import backoff_of
from .kube import Kube, KubeError, make_api_client
from .metrics import OperatorMetrics
from .orphans import OrphanedTokens
from .queueing import is_admitted, is_final
from .reconciler import Reconciler
from .settings import OperatorSettings
from .workqueue import KeyedLocks, WorkQueue

log = logging.getLogger("moodle_archive_operator.operator")

_MAX_BACKOFF_SEC = 30.0


class Runtime:
    def __init__(
        self,
        settings: OperatorSettings,
        api_client: ApiClient | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._api_client = api_client
        self.metrics = metrics or OperatorMetrics()
        self.queue = WorkQueue()
        self.locks = KeyedLocks()
        self.job_owners: dict[str, str] = {}
        self._failures: dict[str, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._metrics_server: Any = None
        self.kube: Kube | None = None
        self.reconciler: Reconciler | None = None
        self.admitter: Admitter | None = None
        self.orphans: OrphanedTokens | None = None

    async def start(self) -> None:
        settings = self.settings
        kube = Kube(
            self._api_client or make_api_client(),
            settings.jobs_namespace,
            settings.kube_timeout_sec,
            threads=max(8, settings.workers * 2),
        )
        self.kube = kube
        self.reconciler = Reconciler(
            kube, settings, self.metrics, self.queue, self.wake_admission,
            host_busy=lambda name: self.admitter.waiting_reason(name) if self.admitter else None,
        )  # fmt: skip
        self.admitter = Admitter(
            kube, settings, self.metrics, self.locks, self.queue, self.reconciler
        )
        from .housekeeping import Housekeeper

        self.orphans = OrphanedTokens(
            kube, settings, self.metrics, self.reconciler.post_events, backoff_of(settings),
            self.reconciler.clock,
        )  # fmt: skip
        housekeeper = Housekeeper(kube, settings, self.metrics, self.orphans, self.enqueue)
        if settings.metrics_port:
            self._metrics_server = self.metrics.serve(settings.metrics_host, settings.metrics_port)
        spawn = asyncio.get_running_loop().create_task
        self._tasks = [
            spawn(self._worker(), name=f"reconcile-{i}") for i in range(settings.workers)
        ]
        self._tasks += [
            spawn(self.admitter.run(), name="admission"),
            spawn(housekeeper.run(), name="housekeeping"),
            spawn(self._resync(), name="resync"),
        ]
        self.admitter.wake()
        log.info(
            "operator started",
            extra={
                "fields": {
                    "namespace": settings.jobs_namespace,
                    "max_parallel_jobs": settings.max_parallel_jobs,
                }
            },
        )

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self.queue.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        if self.kube is not None:
            self.kube.close()

    def background(self, task: asyncio.Task[Any]) -> None:
        """Keep a fire-and-forget task referenced until it ends."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake_admission(self) -> None:
        if self.admitter is not None:
            self.admitter.wake()

    def enqueue(self, name: str) -> None:
        self.queue.add(name)

    async def _worker(self) -> None:
        assert self.reconciler is not None
        while True:
            name = await self.queue.get()
            try:
                async with self.locks.hold(name):
                    await self.reconciler.reconcile(name)
                self._failures.pop(name, None)
            except Exception as exc:
                failures = self._failures.get(name, 0) + 1
                self._failures[name] = failures
                delay = min(_MAX_BACKOFF_SEC, 0.5 * 2 ** (failures - 1))
                self.metrics.reconcile_errors.inc()
                level = logging.WARNING if isinstance(exc, KubeError) else logging.ERROR
                fields = {"archivejob": name, "error": str(exc), "retry_in_sec": delay}
                log.log(
                    level,
                    "reconcile failed; retrying",
                    exc_info=not isinstance(exc, KubeError),
                    extra={"fields": fields},
                )
                self.queue.add_after(name, delay)
            finally:
                self.queue.done(name)

    async def _resync(self) -> None:
        """Reconcile every live ArchiveJob now and then: a net under missed watch events."""
        assert self.kube is not None
        while True:
            await asyncio.sleep(self.settings.resync_interval_sec)
            try:
                for meta in await self.kube.list_metadata("ArchiveJob", LIVE_SELECTOR):
                    self.queue.add(meta["metadata"]["name"])
            except KubeError as exc:
                log.warning("resync failed", extra={"fields": {"error": str(exc)}})

    async def archivejob_deleted(self, body: dict[str, Any]) -> None:
        """An ArchiveJob was deleted: its pod and children go by garbage collection, its token
        Secret (not owned by it) stays until Moodle has been told what it was still owed:
        FAILED for a job that had not ended, else its open delivery duty."""
        self.queue.forget(body["metadata"]["name"])
        self.wake_admission()
        if self.kube is None or self.orphans is None:
            return
        name = (body.get("spec") or {}).get("tokenSecretName")
        secret = await self.kube.get_metadata("Secret", name) if name else None
        if secret is None:
            return
        if is_final(body) and Duty.of(body) is None:
            await self.kube.delete("Secret", name)
            return
        log.info("ArchiveJob deleted before Moodle was told its end",
                 extra={"fields": {"archivejob": body["metadata"]["name"]}})  # fmt: skip
        await self.orphans.adopt(body, secret)
        if is_admitted(body) and not is_final(body):
            # A runner stopped by the deletion tells Moodle itself on its way out: let it go
            # first (it may still be talking to Moodle; a FAILED from here would fail it).
            await self._pods_gone(str(body["metadata"].get("uid")))
        await self.orphans.visit(secret)

    async def _pods_gone(self, uid: str) -> None:
        assert self.kube is not None
        deadline = time.monotonic() + self.settings.job_termination_grace_period_sec + 10
        selector = f"{LABEL_ARCHIVEJOB_UID}={uid}"
        while time.monotonic() < deadline:
            try:
                if not await self.kube.list_metadata("Pod", label_selector=selector):
                    return
            except KubeError:
                pass
            await asyncio.sleep(1.0)

    def probe(self) -> dict[str, Any]:
        admitter = self.admitter
        return {
            "queued_reconciles": len(self.queue),
            "admission_rounds": admitter.rounds if admitter else 0,
            "last_admission_round": admitter.last_round.isoformat()
            if admitter and admitter.last_round
            else None,
        }
