"""How one ArchiveJob runs: its work volume and its number of shards, decided at admission.

Shards are the same runner started as one Indexed Job (completions = parallelism = N); index
I renders `attemptids[I::N]` into the shared work volume and index 0 also finishes (metadata,
backups, ZIP, upload). Shards need a work volume, so without one a job is a single pod. The
plan is recorded in the ArchiveJob's status (`workVolume`, `shardCount`) when it is admitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .settings import OperatorSettings
from .workvolume import WorkVolume, attempt_count, plan_work_volume

# Every pod of a Job carries this label (with the Job's name); the affinity of shards uses it.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


def shard_count(attempts: int, max_shards: int, attempts_per_shard: int) -> int:
    """min(max_shards, ceil(attempts / attempts_per_shard)), at least 1."""
    if attempts <= 0 or attempts_per_shard <= 0:
        return 1
    return max(1, min(max_shards, math.ceil(attempts / attempts_per_shard)))


@dataclass(frozen=True)
class JobLayout:
    work_volume: WorkVolume | None = None
    shards: int = 1

    def status_fields(self) -> dict[str, Any]:
        return {
            "workVolume": self.work_volume.claim_name if self.work_volume else None,
            "shardCount": self.shards,
        }


SINGLE_POD = JobLayout()


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 1 else None


def plan_layout(archivejob: dict[str, Any], settings: OperatorSettings) -> JobLayout:
    """The layout of a job about to be admitted (spec overrides the Helm values)."""
    volume = plan_work_volume(
        archivejob,
        settings.work_volume_storage_class,
        settings.work_volume_access_mode,
        settings.work_volume_size,
        settings.work_volume_base_size,
        settings.work_volume_per_attempt_size,
    )
    if volume is None:
        return SINGLE_POD
    spec = archivejob.get("spec") or {}
    max_shards = _positive(spec.get("maxShards")) or settings.shards_max
    per_shard = _positive(spec.get("attemptsPerShard")) or settings.shards_attempts_per_shard
    # The per-host cap bounds a job's shards (a job may never need more than the cap).
    cap = settings.max_renders_per_moodle_host
    if cap > 0:
        max_shards = min(max_shards, max(1, cap // settings.attempt_concurrency()))
    shards = shard_count(attempt_count(archivejob), max_shards, per_shard)
    return JobLayout(work_volume=volume, shards=shards)


def recorded_shards(archivejob: dict[str, Any]) -> int:
    """The shard count an admitted ArchiveJob runs with (1 before admission or if absent)."""
    return _positive((archivejob.get("status") or {}).get("shardCount")) or 1


def shard_affinity(job_name: str) -> dict[str, Any]:
    """All pods of one Job on one node: a ReadWriteOnce volume is mounted by one node only."""
    return {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {JOB_NAME_LABEL: job_name}},
                    "topologyKey": HOSTNAME_TOPOLOGY,
                }
            ]
        }
    }


def indexed_job_fields(shards: int, backoff_limit: int) -> dict[str, Any]:
    """Job spec fields of a sharded job: one Indexed Job, every index run at once, each index
    retried `backoff_limit` times on its own, and the Job failed as soon as one index has
    failed for good (the archive needs every shard)."""
    return {
        "completionMode": "Indexed",
        "completions": shards,
        "parallelism": shards,
        "backoffLimitPerIndex": backoff_limit,
        "maxFailedIndexes": 0,
    }
