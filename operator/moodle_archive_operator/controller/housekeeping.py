"""Periodic housekeeping: ArchiveJob history limits, orphan sweep, token Secrets of gone
ArchiveJobs (Moodle told first), expired work volumes, final-phase metrics, and a nudge for
open delivery duties."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from ..archivejob import LABEL_FINISHED
from .conditions import utc_now
from .kube import Kube, KubeError
from .metrics import OperatorMetrics
from .naming import CHILD_SELECTOR
from .orphans import OrphanedTokens, owed_status
from .settings import OperatorSettings
from .sweeping import (
    Owners,
    expired_work_volumes,
    history_to_delete,
    leftover_token_secrets,
    orphaned_children,
    orphaned_token_secrets,
    owes_moodle,
)

log = logging.getLogger("moodle_archive_operator.operator")

# Token Secrets are made by the gateway with this component label.
TOKEN_SELECTOR = "app.kubernetes.io/component=token"  # noqa: S105 - a label
CHILD_KINDS = (
    "Job", "PersistentVolumeClaim", "ConfigMap", "RoleBinding", "Role", "ServiceAccount",
)  # fmt: skip


class Housekeeper:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        orphans: OrphanedTokens,
        enqueue: Callable[[str], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.orphans = orphans
        self.enqueue = enqueue
        self.clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except (KubeError, OSError) as exc:
                log.warning("housekeeping failed", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(self.settings.housekeeping_interval_sec)

    async def sweep(self) -> dict[str, list[str]]:
        """One pass; returns what it deleted, by kind."""
        now = self.clock()
        deleted: dict[str, list[str]] = {}
        # Dependents first, owners after: an owner is always created before its dependents,
        # so every dependent listed here has its owner in the later list, unless it is gone.
        # Finished ArchiveJobs last: whether they still owe Moodle is at least that fresh.
        children = {
            kind: await self.kube.list_metadata(kind, label_selector=CHILD_SELECTOR)
            for kind in CHILD_KINDS
        }
        secrets = await self.kube.list_metadata("Secret", label_selector=TOKEN_SELECTOR)
        everyone = await self.kube.list_metadata("ArchiveJob")
        finished = await self.kube.list("ArchiveJob", label_selector=f"{LABEL_FINISHED}=true")
        owners = Owners.of(everyone, finished)
        self.metrics.set_final_phases((aj.get("status") or {}).get("phase", "") for aj in finished)
        history = history_to_delete(
            finished, now, self.settings.history_max_count, self.settings.history_max_age_sec
        )
        deleted["ArchiveJob"] = [n for n in history if await self.kube.delete("ArchiveJob", n)]
        grace = self.settings.orphan_grace_sec
        for kind in CHILD_KINDS:
            doomed = orphaned_children(children[kind], owners, now, grace)
            deleted[kind] = [n for n in doomed if await self.kube.delete(kind, n)]
        doomed = leftover_token_secrets(secrets, owners)
        deleted["Secret"] = [n for n in doomed if await self.kube.delete("Secret", n)]
        owed: list[str] = []
        for secret in orphaned_token_secrets(secrets, owners, now, grace):
            if await self.orphans.visit(secret):
                deleted["Secret"].append(secret["metadata"]["name"])
            elif (status := owed_status(secret)) is not None:
                owed.append(status)
        for archivejob in finished:
            if owes_moodle(archivejob):  # a net under lost wake-ups: the plan says when
                self.enqueue(archivejob["metadata"]["name"])
                owed.append(str(archivejob["status"]["pendingMoodleStatus"]))
        self.metrics.set_pending_deliveries(owed)
        ttl = self.settings.ttl_seconds_after_finished
        if ttl is not None:
            claims = children["PersistentVolumeClaim"]
            doomed = expired_work_volumes(claims, finished, now, ttl)
            deleted["PersistentVolumeClaim"] += [
                n for n in doomed if await self.kube.delete("PersistentVolumeClaim", n)
            ]
        swept = {kind: names for kind, names in deleted.items() if names}
        if swept:
            log.info("housekeeping deleted objects", extra={"fields": {"deleted": swept}})
        return swept
