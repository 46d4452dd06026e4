"""The operator's Prometheus metrics (its own registry; never a token or a URL in a label)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ..archivejob import FINAL_PHASES, Phase

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
_RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.archivejobs = Gauge(
            "moodle_archiver_operator_archivejobs", "ArchiveJobs by phase", ["phase"], registry=r
        )
        self.queue_length = Gauge(
            "moodle_archiver_operator_queue_length",
            "ArchiveJobs waiting for a free slot",
            registry=r,
        )
        self.active_jobs = Gauge(
            "moodle_archiver_operator_active_jobs",
            "Jobs holding one of the maxParallelJobs slots",
            registry=r,
        )
        self.admission_latency = Histogram(
            "moodle_archiver_operator_admission_latency_seconds",
            "From the task's submission to the creation of its Job",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.run_duration = Histogram(
            "moodle_archiver_operator_run_duration_seconds",
            "From admission to the final state, by outcome",
            ["outcome"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "moodle_archiver_operator_archivejobs_finished",
            "ArchiveJobs that reached a final state, by outcome and reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.moodle_notifications = Counter(
            "moodle_archiver_operator_moodle_notifications",
            "Final statuses the operator sent to Moodle itself, by status and answer",
            ["status", "result"],
            registry=r,
        )
        self.deliveries_pending = Gauge(
            "moodle_archiver_operator_moodle_deliveries_pending",
            "Final statuses (FINISHED: an uploaded archive's processing) Moodle is still owed, "
            "by finished ArchiveJobs and by token Secrets of deleted ones, by status",
            ["status"],
            registry=r,
        )
        self.deliveries_abandoned = Counter(
            "moodle_archiver_operator_moodle_deliveries_abandoned",
            "Final statuses the operator gave up delivering, by status and reason "
            "(TokenExpired, Refused)",
            ["status", "reason"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "moodle_archiver_operator_reconcile_errors",
            "Reconciliations that failed and were retried",
            registry=r,
        )

    def set_live_phases(self, phases: Iterable[str]) -> None:
        tally = Tally(phases)
        for phase in Phase:
            if phase not in FINAL_PHASES:
                self.archivejobs.labels(phase.value).set(tally.get(phase.value, 0))

    def set_final_phases(self, phases: Iterable[str]) -> None:
        tally = Tally(phases)
        for phase in FINAL_PHASES:
            self.archivejobs.labels(phase.value).set(tally.get(phase.value, 0))

    def set_pending_deliveries(self, statuses: Iterable[str]) -> None:
        tally = Tally(statuses)
        for status in ("FAILED", "TIMEOUT", "FINISHED"):
            self.deliveries_pending.labels(status).set(tally.get(status, 0))

    def serve(self, host: str, port: int) -> object:
        """Serve /metrics in a thread; returns the server (call `.shutdown()` to stop)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
