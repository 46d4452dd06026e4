"""Pure builder of the `batch/v1` Job that runs one ArchiveJob.

The pod meets the restricted Pod Security Standard (unless host networking is
switched on): non-root, no privilege escalation, all capabilities dropped,
seccomp RuntimeDefault; its root filesystem is read-only with an emptyDir for
/tmp, the work volume (the job's PVC, else an emptyDir) at /work and a
memory-backed /dev/shm for Chromium. It gets its task from the ConfigMap, the
Moodle token from the token Secret (a read-only file), and a projected
ServiceAccount token to patch its ArchiveJob's status. A sharded job (see
layout.py) is one Indexed Job whose pods all mount the same work volume.
"""

from __future__ import annotations

from typing import Any

from ..archivejob import SECRET_TOKEN_KEY
from .children import TASK_KEY, child_metadata
from .hostcap import ANNOTATION_MOODLE_HOST, moodle_host
from .layout import SINGLE_POD, JobLayout, indexed_job_fields, shard_affinity
from .naming import CONTAINER_NAME, child_annotations, child_labels
from .settings import CONCURRENCY_ENV, OperatorSettings
from .workvolume import work_volume_source

TASK_DIR = "/etc/moodle-archiver/task"
TOKEN_DIR = "/var/run/secrets/moodle-archiver"  # noqa: S105 - a path
KUBE_API_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WORK_DIR = "/work"
TMP_DIR = "/tmp"  # noqa: S108 - an emptyDir of the pod's own

# Runner exit codes that no retry can fix (cli.py): 1 failed (Moodle told FAILED),
# 2 invalid input, 3 runtime limit reached (Moodle told TIMEOUT).
PERMANENT_EXIT_CODES = (1, 2, 3)


def runner_args(archivejob: dict[str, Any], shards: int = 1) -> list[str]:
    args = [
        "run-job",
        "--task", f"{TASK_DIR}/{TASK_KEY}",
        "--token-file", f"{TOKEN_DIR}/{SECRET_TOKEN_KEY}",
        "--job-id", str(archivejob["spec"]["jobId"]),
        "--log-format", "json",
    ]  # fmt: skip
    if shards > 1:  # each pod's index comes from JOB_COMPLETION_INDEX
        args += ["--shards", str(shards)]
    return args


def _env(archivejob: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    meta, spec = archivejob["metadata"], archivejob["spec"]
    own = {
        "QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC": str(
            settings.runner_timeout_sec(int(spec["timeoutSeconds"]))
        ),
        "QUIZ_ARCHIVER_WORK_DIR": WORK_DIR,
        "HOME": TMP_DIR,
        "TMPDIR": TMP_DIR,
        "MAO_ARCHIVEJOB_NAME": meta["name"],
        "MAO_ARCHIVEJOB_NAMESPACE": meta["namespace"],
        "MAO_KUBE_TOKEN_FILE": f"{KUBE_API_DIR}/token",
        "MAO_KUBE_CA_FILE": f"{KUBE_API_DIR}/ca.crt",
        **dict.fromkeys(CONCURRENCY_ENV, str(settings.attempt_concurrency())),
    }
    merged = {**dict(sorted(settings.job_env.items())), **own}
    return [{"name": name, "value": value} for name, value in merged.items()]


def _resources(settings: OperatorSettings) -> dict[str, Any]:
    requests = {"cpu": settings.job_cpu_request, "memory": settings.job_memory_request}
    limits = {"memory": settings.job_memory_limit}
    if settings.job_cpu_limit:
        limits["cpu"] = settings.job_cpu_limit
    if settings.job_ephemeral_storage_request:
        requests["ephemeral-storage"] = settings.job_ephemeral_storage_request
    if settings.job_ephemeral_storage_limit:
        limits["ephemeral-storage"] = settings.job_ephemeral_storage_limit
    return {"requests": requests, "limits": limits}


def _volumes(
    archivejob: dict[str, Any], settings: OperatorSettings, name: str, layout: JobLayout
) -> list[dict]:
    return [
        {
            "name": "task",
            "configMap": {
                "name": name,
                "items": [{"key": TASK_KEY, "path": TASK_KEY}],
                "defaultMode": 0o444,
            },
        },
        {
            "name": "moodle-token",
            "secret": {
                "secretName": archivejob["spec"]["tokenSecretName"],
                "items": [{"key": SECRET_TOKEN_KEY, "path": SECRET_TOKEN_KEY}],
                "defaultMode": 0o440,
            },
        },
        {
            "name": "kube-api-access",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": "token",
                            "expirationSeconds": settings.job_api_token_expiration_sec,
                        }
                    },
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                ]
            },
        },
        {"name": "tmp", "emptyDir": {"sizeLimit": settings.job_tmp_size_limit}},
        work_volume_source(layout.work_volume, settings.job_work_size_limit),
        {
            "name": "dshm",
            "emptyDir": {"medium": "Memory", "sizeLimit": settings.job_shm_size_limit},
        },
    ]


_MOUNTS = [
    {"name": "task", "mountPath": TASK_DIR, "readOnly": True},
    {"name": "moodle-token", "mountPath": TOKEN_DIR, "readOnly": True},
    {"name": "kube-api-access", "mountPath": KUBE_API_DIR, "readOnly": True},
    {"name": "tmp", "mountPath": TMP_DIR},
    {"name": "work", "mountPath": WORK_DIR},
    {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 - memory-backed emptyDir
]


def _container(
    archivejob: dict[str, Any], settings: OperatorSettings, layout: JobLayout
) -> dict[str, Any]:
    return {
        "name": CONTAINER_NAME,
        "image": settings.job_image,
        "imagePullPolicy": settings.job_image_pull_policy,
        "command": list(settings.job_command),
        "args": runner_args(archivejob, layout.shards),
        "env": _env(archivejob, settings),
        "resources": _resources(settings),
        "volumeMounts": [dict(m) for m in _MOUNTS],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _pod_spec(
    archivejob: dict[str, Any], settings: OperatorSettings, name: str, layout: JobLayout
) -> dict:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.job_termination_grace_period_sec,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.job_run_as_user,
            "runAsGroup": settings.job_run_as_group,
            "fsGroup": settings.job_fs_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(archivejob, settings, layout)],
        "volumes": _volumes(archivejob, settings, name, layout),
    }
    volume = layout.work_volume
    if layout.shards > 1 and volume is not None and not volume.shared:
        spec["affinity"] = shard_affinity(name)
    if settings.job_host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if settings.job_node_selector:
        spec["nodeSelector"] = dict(settings.job_node_selector)
    if settings.job_tolerations:
        spec["tolerations"] = [dict(t) for t in settings.job_tolerations]
    if settings.job_priority_class_name:
        spec["priorityClassName"] = settings.job_priority_class_name
    if settings.job_runtime_class_name:
        spec["runtimeClassName"] = settings.job_runtime_class_name
    if settings.job_image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in settings.job_image_pull_secrets]
    return spec


def build_job(
    archivejob: dict[str, Any], settings: OperatorSettings, layout: JobLayout = SINGLE_POD
) -> dict[str, Any]:
    meta = child_metadata(archivejob)
    job_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": settings.backoff_limit,
        "activeDeadlineSeconds": int(archivejob["spec"]["timeoutSeconds"]),
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {
            "rules": [
                # An eviction or preemption is not the job's fault: run it again.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": list(PERMANENT_EXIT_CODES),
                    },
                },
            ]
        },
        "template": {
            "metadata": {
                "labels": {**settings.job_pod_labels, **child_labels(archivejob)},
                "annotations": {
                    **settings.job_pod_annotations,
                    **child_annotations(archivejob),
                    ANNOTATION_MOODLE_HOST: moodle_host(archivejob),
                },
            },
            "spec": _pod_spec(archivejob, settings, meta["name"], layout),
        },
    }
    if layout.shards > 1:
        del job_spec["backoffLimit"]  # per index instead
        job_spec.update(indexed_job_fields(layout.shards, settings.backoff_limit))
    if settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}
