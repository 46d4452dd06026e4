"""Operator settings, read from the environment (`MAO_*`).

Names shared with the gateway (jobs namespace, parallel jobs, log level) come from
`ControlPlaneSettings`, with the same variables and meaning. Maps and lists
(`*_ENV`, `*_ANNOTATIONS`, `*_NODE_SELECTOR`, `*_TOLERATIONS`, ...) are JSON.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from moodle_archive_job.settings import RefBool, runner_env_names

from ..settings_base import ControlPlaneSettings
from .workvolume import parse_quantity

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Env names the operator sets on every job pod itself; `job_env` may not override them
# (the runner's settings under either of their names: a second name would disagree).
RESERVED_JOB_ENV = frozenset(
    {
        "MAO_ARCHIVEJOB_NAME",
        "MAO_ARCHIVEJOB_NAMESPACE",
        "MAO_KUBE_TOKEN_FILE",
        "MAO_KUBE_CA_FILE",
        *runner_env_names("request_timeout_sec"),
        *runner_env_names("work_dir"),
        "HOME",
        "TMPDIR",
    }
)
# The runner's attempt concurrency: admission counts it against the per-host cap, so the
# operator sets it on every pod (from `job_attempt_concurrency`, else from `job_env`).
CONCURRENCY_ENV = runner_env_names("attempt_concurrency")


class OperatorSettings(ControlPlaneSettings):
    # --- queue and timeouts ---------------------------------------------------------------
    # An admitted job whose pod has not started running after this long is failed.
    pending_timeout_sec: float = Field(default=600, gt=0)
    # An ArchiveJob whose token Secret never appears is failed after this long.
    token_secret_timeout_sec: float = Field(default=60, gt=0)
    # The runner stops itself this much before the Job's activeDeadlineSeconds (at most
    # a fifth of the timeout) so that it can still tell Moodle TIMEOUT.
    runner_deadline_margin_sec: int = Field(default=60, ge=0)

    # --- the Job and its pod ---------------------------------------------------------------
    job_image: str = "moodle-archive-job:latest"
    job_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    job_image_pull_secrets: list[str] = Field(default_factory=list)
    job_command: list[str] = Field(default_factory=lambda: ["moodle-archiver"], min_length=1)
    backoff_limit: int = Field(default=1, ge=0, le=10)
    ttl_seconds_after_finished: int | None = Field(default=3600, ge=0)
    job_cpu_request: str = "500m"
    job_cpu_limit: str | None = "2"
    job_memory_request: str = "1Gi"
    job_memory_limit: str = "2Gi"
    job_ephemeral_storage_request: str | None = None
    job_ephemeral_storage_limit: str | None = None
    job_tmp_size_limit: str = "1Gi"
    job_work_size_limit: str = "8Gi"
    job_shm_size_limit: str = "1Gi"
    job_run_as_user: int = Field(default=10001, ge=1)
    job_run_as_group: int = Field(default=10001, ge=1)
    job_fs_group: int = Field(default=10001, ge=1)
    job_termination_grace_period_sec: int = Field(default=30, ge=0)
    # Lifetime of the projected ServiceAccount token the pod patches its status with.
    job_api_token_expiration_sec: int = Field(default=3600, ge=600)
    # Extra environment of job pods (runner settings, MOODLE_ARCHIVER_* or QUIZ_ARCHIVER_*),
    # JSON object.
    job_env: dict[str, str] = Field(default_factory=dict)
    job_pod_annotations: dict[str, str] = Field(default_factory=dict)
    job_pod_labels: dict[str, str] = Field(default_factory=dict)
    job_node_selector: dict[str, str] = Field(default_factory=dict)
    job_tolerations: list[dict[str, Any]] = Field(default_factory=list)
    job_priority_class_name: str | None = None
    job_runtime_class_name: str | None = None
    # Host networking for job pods (off; the node e2e test on a bare kubelet needs it).
    job_host_network: RefBool = False
    # Attempts in flight per job pod (the runner's attempt concurrency); None: `job_env`'s
    # value if it sets one, else 2 per CPU of the CPU limit (at least 2; 4 without a limit).
    job_attempt_concurrency: int | None = Field(default=None, ge=1, le=64)

    # --- work volume and shards -------------------------------------------------------------
    # StorageClass of the per-job work volume (a PVC owned by the ArchiveJob, at /work); None:
    # an emptyDir (no resume after a pod is lost, no shards).
    work_volume_storage_class: str | None = None
    work_volume_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    # A fixed size; None: base + attempts x per-attempt size.
    work_volume_size: str | None = None
    work_volume_base_size: str = "1Gi"
    work_volume_per_attempt_size: str = "16Mi"
    # Pods per job: min(max, ceil(attempts / attempts per shard)), only with a work volume.
    shards_max: int = Field(default=1, ge=1, le=64)
    shards_attempts_per_shard: int = Field(default=100, ge=1)
    # Concurrent attempt renders per Moodle base URL across all running jobs (0: no limit).
    max_renders_per_moodle_host: int = Field(default=0, ge=0)

    # --- housekeeping ----------------------------------------------------------------------
    # Finished ArchiveJobs kept: at most this many, none older than the age (0: no limit).
    history_max_count: int = Field(default=200, ge=0)
    history_max_age_sec: float = Field(default=7 * 24 * 3600, ge=0)
    housekeeping_interval_sec: float = Field(default=30, gt=0)
    # Objects younger than this are never swept as orphans (they may be being created).
    orphan_grace_sec: float = Field(default=120, ge=0)
    # Every live ArchiveJob is reconciled at least this often (a safety net for missed events).
    resync_interval_sec: float = Field(default=30, gt=0)

    # --- the process -----------------------------------------------------------------------
    workers: int = Field(default=8, ge=1, le=64)
    kube_timeout_sec: float = Field(default=10, gt=0)
    moodle_notify_timeout_sec: float = Field(default=20, gt=0)
    # A final status Moodle has not heard is redelivered with exponential backoff from the
    # base to the cap (jittered) until Moodle acknowledges or the task's token expires.
    moodle_redelivery_base_sec: float = Field(default=5, gt=0)
    moodle_redelivery_max_sec: float = Field(default=300, gt=0)
    liveness_endpoint: str | None = "http://0.0.0.0:8080/healthz"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on all interfaces
    metrics_port: int = Field(default=9090, ge=0, le=65535)

    @field_validator("job_env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME_RE.match(name):
                raise ValueError(f"not an environment variable name: {name!r}")
            if name in RESERVED_JOB_ENV:
                raise ValueError(f"{name} is set by the operator and cannot be overridden")
        given = {env[name].strip() for name in CONCURRENCY_ENV if name in env}
        if len(given) > 1 or any(not v.isdigit() or int(v) < 1 for v in given):
            raise ValueError(f"{' and '.join(CONCURRENCY_ENV)} must agree and be >= 1")
        return env

    @field_validator("work_volume_storage_class", "work_volume_size", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "work_volume_size", "work_volume_base_size", "work_volume_per_attempt_size"
    )
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quantity(value)
        return value

    def attempt_concurrency(self) -> int:
        """The attempt concurrency every job pod runs with (and admission counts)."""
        if self.job_attempt_concurrency is not None:
            return self.job_attempt_concurrency
        for name in CONCURRENCY_ENV:
            if name in self.job_env:
                return int(self.job_env[name])
        if not self.job_cpu_limit:
            return 4
        return max(2, 2 * math.ceil(_cpus(self.job_cpu_limit)))

    def runner_timeout_sec(self, timeout_seconds: int) -> int:
        """The runner's own limit for a Job whose activeDeadlineSeconds is `timeout_seconds`."""
        margin = min(self.runner_deadline_margin_sec, timeout_seconds // 5)
        return max(1, timeout_seconds - margin)


def _cpus(quantity: str) -> float:
    """CPUs of a Kubernetes CPU quantity (`2`, `1.5`, `500m`)."""
    text = quantity.strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
