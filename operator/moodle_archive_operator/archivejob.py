"""The ArchiveJob custom resource: pydantic mirrors of its spec and status, and pure builders.

`crds/archivejobs.moodlearchiver.io.yaml` is the schema the API server enforces;
these models mirror it (a unit test keeps the two in step). Nothing here talks to
the API server: the gateway and the operator send what these functions build.
The token never enters an ArchiveJob; it lives in the Secret built by
`build_token_secret`, which names its ArchiveJob (uid label, name annotation) but is not
owned by it: it must outlive a deleted ArchiveJob until Moodle has been told (it carries
the `DeliveryFacts` for that), and the operator deletes it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from moodle_archive_job.final_status import PendingArtifact
from moodle_archive_job.task import (
    ArchiveStructure,
    ArchiveTask,
    AttemptsTask,
    BackupTask,
    ImageOptimize,
    PaperFormat,
    Protocol,
)

GROUP = "moodlearchiver.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ArchiveJob"
PLURAL = "archivejobs"

LABEL_JOB_ID = f"{GROUP}/job-id"
LABEL_PROTOCOL = f"{GROUP}/protocol"
# Set to "true" by the operator once an ArchiveJob is final; lets readers list only live jobs.
LABEL_FINISHED = f"{GROUP}/finished"
# On per-job objects and token Secrets: the ArchiveJob's uid (label) and name (annotation).
LABEL_ARCHIVEJOB_UID = f"{GROUP}/archivejob-uid"
ANNOTATION_ARCHIVEJOB = f"{GROUP}/archivejob"
# On token Secrets: the DeliveryFacts, JSON.
ANNOTATION_DELIVERY = f"{GROUP}/moodle-delivery"
# On token Secrets whose ArchiveJob is gone: what is owed and how far its delivery got, JSON
# (written by the operator, so that a restarted one keeps the backoff schedule).
ANNOTATION_DELIVERY_STATE = f"{GROUP}/moodle-delivery-state"
APP_NAME = "moodle-archiver"
PART_OF = "moodle-archive-operator"
SECRET_TOKEN_KEY = "token"  # noqa: S105 - the key name, not a secret

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Phase(StrEnum):
    """Derived, human-facing summary of the conditions (never extended lightly)."""

    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    WAITING_FOR_BACKUP = "WaitingForBackup"
    FINALIZING = "Finalizing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"


FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED})


class _Crd(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


# --- spec --------------------------------------------------------------------------------------


class MoodleSpec(_Crd):
    base_url: str
    ws_url: str
    upload_url: str


class AttemptsSpec(_Crd):
    attempt_ids: list[int] = Field(min_length=1)
    fetch_metadata: bool = True
    # Forwarded verbatim to Moodle: "1"/"0" strings or int 0 (spec 2.2).
    sections: dict[str, str | int] = Field(min_length=1)
    fetch_attachments: bool = False
    paper_format: PaperFormat = PaperFormat.A4
    keep_html_files: bool = False
    foldername_pattern: str = Field(min_length=1)
    filename_pattern: str = ""
    # Same field names in the CRD: the task's own model serves.
    image_optimize: ImageOptimize | None = None


class BackupSpec(_Crd):
    backup_id: str
    filename: str
    file_download_url: str


class WorkVolumeSpec(_Crd):
    """Per-job override of the work volume: a StorageClass (`""`: none) and a size."""

    storage_class_name: str | None = None
    size: str | None = None


class ArchiveJobSpec(_Crd):
    protocol: Protocol
    job_id: str = Field(pattern=_UUID_RE.pattern)
    moodle: MoodleSpec
    course_id: int | None = None
    cm_id: int | None = None
    quiz_id: int | None = None
    task_id: int | None = None
    attempts: AttemptsSpec | None = None
    backups: list[BackupSpec] = Field(default_factory=list)
    archive_filename: str = Field(min_length=1)
    moodle_max_upload_bytes: int | None = Field(default=None, ge=1)
    archive_structure: ArchiveStructure | None = None
    checksum_sidecars: bool | None = None
    timeout_seconds: int = Field(ge=1)
    token_secret_name: str
    cancel_requested: bool = False
    submitted_at: datetime | None = None
    # Overrides of the operator's work volume and shard settings for this job.
    work_volume: WorkVolumeSpec | None = None
    max_shards: int | None = Field(default=None, ge=1, le=64)
    attempts_per_shard: int | None = Field(default=None, ge=1)


# --- status ------------------------------------------------------------------------------------


class Condition(_Crd):
    """`metav1.Condition`."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class Artifact(_Crd):
    name: str
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class ShardStatus(_Crd):
    """One shard's own slice of a sharded job (written by that shard's pod)."""

    attempts_done: int | None = Field(default=None, ge=0)
    attempts_total: int | None = Field(default=None, ge=0)
    phase: str | None = None
    attempts_resumed: int | None = Field(default=None, ge=0)
    attempts_rerendered: int | None = Field(default=None, ge=0)


class WorkVolumeCreate(_Crd):
    """Failed tries to create a waiting job's work volume claim (controller/claimtrouble.py)."""

    attempts: int | None = Field(default=None, ge=1)
    first_failure: datetime | None = None
    last_failure: datetime | None = None
    message: str | None = None


class ArchiveJobStatus(_Crd):
    phase: Phase | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    attempts_done: int | None = Field(default=None, ge=0)
    attempts_total: int | None = Field(default=None, ge=0)
    # Written by the job pod: taken from verified checkpoints, and found corrupt and re-rendered.
    attempts_resumed: int | None = Field(default=None, ge=0)
    attempts_rerendered: int | None = Field(default=None, ge=0)
    shards: dict[str, ShardStatus] | None = None
    message: str | None = None
    # Written only by the job pod: ids of attempts that failed; one-line warnings.
    failed_attempts: list[int] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, max_length=50)
    moodle_status: str | None = None
    # A final status Moodle has not been told yet (the job pod or the operator writes it;
    # the operator clears it once delivered or given up). FINISHED: process pending_artifact.
    pending_moodle_status: Literal["FAILED", "TIMEOUT", "FINISHED"] | None = None
    pending_artifact: PendingArtifact | None = None
    moodle_delivery_attempts: int | None = Field(default=None, ge=0)
    last_moodle_delivery_time: datetime | None = None
    # Written only by the job pod (its ProgressSink): Running ... Succeeded/Failed/TimedOut.
    runner_phase: str | None = None
    job_name: str | None = None
    queued_at: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    artifact: Artifact | None = None
    # The job's PersistentVolumeClaim (absent: an emptyDir) and its number of pods.
    work_volume: str | None = None
    work_volume_create: WorkVolumeCreate | None = None
    shard_count: int | None = Field(default=None, ge=1)
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class ArchiveJob(_Crd):
    """The parts of an ArchiveJob object this project reads."""

    metadata: dict[str, Any]
    spec: ArchiveJobSpec
    status: ArchiveJobStatus = Field(default_factory=ArchiveJobStatus)

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def is_final(self) -> bool:
        return self.status.phase in FINAL_PHASES


# --- names and labels --------------------------------------------------------------------------


def new_job_id() -> str:
    """A fresh worker job id: a random UUID (Moodle keeps it unique forever per site)."""
    return str(uuid.uuid4())


def is_job_id(value: str) -> bool:
    return bool(_UUID_RE.match(value))


def archivejob_name(job_id: str) -> str:
    return f"archive-{job_id}"


def token_secret_name(job_id: str) -> str:
    return f"archive-{job_id}-token"


def common_labels(job_id: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "moodle-archiver-gateway",
        LABEL_JOB_ID: job_id,
    }


# --- task <-> spec -----------------------------------------------------------------------------


# ArchiveTask field -> spec field, where the CRD's camelCase wants another Python name.
_TASK_TO_SPEC = {"courseid": "course_id", "cmid": "cm_id", "quizid": "quiz_id", "taskid": "task_id"}
_ATTEMPTS_TO_SPEC = {"attemptids": "attempt_ids"}
_BACKUP_TO_SPEC = {"backupid": "backup_id"}


def _renamed(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(key, key): value for key, value in data.items()}


def _reversed(names: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in names.items()}


def spec_from_task(
    task: ArchiveTask,
    job_id: str,
    timeout_seconds: int,
    submitted_at: datetime | None = None,
) -> ArchiveJobSpec:
    data = _renamed(task.model_dump(exclude={"attempts", "backups"}), _TASK_TO_SPEC)
    return ArchiveJobSpec(
        **data,
        job_id=job_id,
        attempts=None
        if task.attempts is None
        else AttemptsSpec(**_renamed(task.attempts.model_dump(), _ATTEMPTS_TO_SPEC)),
        backups=[BackupSpec(**_renamed(b.model_dump(), _BACKUP_TO_SPEC)) for b in task.backups],
        timeout_seconds=timeout_seconds,
        token_secret_name=token_secret_name(job_id),
        submitted_at=submitted_at or datetime.now(UTC),
    )


def task_from_spec(spec: ArchiveJobSpec) -> ArchiveTask:
    """The job's input contract, as the pod and the operator need it."""
    fields = {_TASK_TO_SPEC.get(name, name) for name in ArchiveTask.model_fields} - {
        "attempts",
        "backups",
    }
    data = _renamed(spec.model_dump(include=fields), _reversed(_TASK_TO_SPEC))
    return ArchiveTask(
        **data,
        attempts=None
        if spec.attempts is None
        else AttemptsTask(**_renamed(spec.attempts.model_dump(), _reversed(_ATTEMPTS_TO_SPEC))),
        backups=[
            BackupTask(**_renamed(b.model_dump(), _reversed(_BACKUP_TO_SPEC)))
            for b in spec.backups
        ],
    )


# --- manifests ---------------------------------------------------------------------------------


def build_archivejob(spec: ArchiveJobSpec, namespace: str) -> dict[str, Any]:
    """The ArchiveJob manifest for `spec` (named and labelled after its job id)."""
    labels = common_labels(spec.job_id, "archive-job")
    labels[LABEL_PROTOCOL] = spec.protocol.value.replace("/", "-")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": archivejob_name(spec.job_id),
            "namespace": namespace,
            "labels": labels,
        },
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def owner_reference(archivejob: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to a created ArchiveJob (its uid is only known after creation)."""
    meta = archivejob["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        # True would need `update` on archivejobs/finalizers where that admission plugin is on.
        "blockOwnerDeletion": False,
    }


class DeliveryFacts(_Crd):
    """What telling Moodle an ArchiveJob's end needs besides the token (nothing secret).

    Kept on the token Secret, so the end can still be delivered after the ArchiveJob is
    gone. `deadline` is when Moodle invalidates the token: the ArchiveJob's creation plus
    its timeout (Moodle's own job timeout, counted from the task's creation, is the same
    setting on a consistent site).
    """

    archivejob: str
    archivejob_uid: str
    protocol: Protocol
    moodle: MoodleSpec
    job_id: str
    task_id: int | None = None
    deadline: datetime | None = None

    @classmethod
    def of(cls, archivejob: dict[str, Any]) -> DeliveryFacts:
        meta, spec = archivejob["metadata"], archivejob["spec"]
        return cls(
            archivejob=meta["name"],
            archivejob_uid=meta["uid"],
            protocol=spec["protocol"],
            moodle=spec["moodle"],
            job_id=spec["jobId"],
            task_id=spec.get("taskId"),
            deadline=token_deadline(archivejob),
        )

    def task(self) -> ArchiveTask:
        """A task that addresses this job's status and artifact calls (nothing else)."""
        return ArchiveTask(
            protocol=self.protocol,
            moodle=self.moodle.model_dump(),
            archive_filename="archive",
            taskid=self.task_id,
        )


def token_deadline(archivejob: dict[str, Any]) -> datetime | None:
    created = archivejob["metadata"].get("creationTimestamp")
    seconds = archivejob["spec"].get("timeoutSeconds")
    if not created or not seconds:
        return None
    when = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return when + timedelta(seconds=int(seconds))


def build_token_secret(
    archivejob: dict[str, Any], token: SecretStr, namespace: str
) -> dict[str, Any]:
    """The token Secret of a created ArchiveJob: labelled with its uid, not owned by it."""
    spec = archivejob["spec"]
    job_id = spec["jobId"]
    labels = common_labels(job_id, "token")
    labels[LABEL_ARCHIVEJOB_UID] = str(archivejob["metadata"]["uid"])
    facts = DeliveryFacts.of(archivejob)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": spec["tokenSecretName"],
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                ANNOTATION_ARCHIVEJOB: archivejob["metadata"]["name"],
                ANNOTATION_DELIVERY: facts.model_dump_json(by_alias=True, exclude_none=True),
            },
        },
        "stringData": {SECRET_TOKEN_KEY: token.get_secret_value()},
    }


def build_event(
    archivejob: dict[str, Any],
    reason: str,
    message: str,
    component: str,
    type_: Literal["Normal", "Warning"] = "Normal",
    now: datetime | None = None,
) -> dict[str, Any]:
    """A core/v1 Event about an ArchiveJob (CamelCase `reason`; never put secrets in `message`)."""
    meta = archivejob["metadata"]
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": component},
        "reportingComponent": f"{GROUP}/{component}",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
