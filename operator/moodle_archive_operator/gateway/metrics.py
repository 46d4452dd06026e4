"""Prometheus metrics of the gateway (one registry per app, so tests can build many).

Label values come from small fixed sets (protocol, reason, outcome): never a URL,
a job id or anything from the request body.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.accepted = Counter(
            "moodle_archiver_gateway_tasks_accepted",
            "Archive tasks accepted (ArchiveJob and token Secret created).",
            ["protocol"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "moodle_archiver_gateway_tasks_rejected",
            "Archive tasks refused, by reason.",
            ["protocol", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "moodle_archiver_gateway_archive_request_duration_seconds",
            "Time to answer an archive request, including the Moodle probe.",
            ["protocol", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.probe_latency = Histogram(
            "moodle_archiver_gateway_moodle_probe_duration_seconds",
            "Time of the connection probe to Moodle (spec 3.2), by result.",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.recheck = Counter(
            "moodle_archiver_gateway_capacity_rechecks",
            "Capacity re-checks after creating an ArchiveJob, by source: the watched copy, "
            "or a list (no watched copy, or it lagged).",
            ["source"],
            registry=self.registry,
        )

    def observe_accepted(self, protocol: str, seconds: float) -> None:
        self.accepted.labels(protocol).inc()
        self.latency.labels(protocol, "accepted").observe(seconds)

    def observe_rejected(self, protocol: str, reason: str, seconds: float) -> None:
        self.rejected.labels(protocol, reason).inc()
        self.latency.labels(protocol, "rejected").observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
