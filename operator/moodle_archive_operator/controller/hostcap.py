"""The per-Moodle-host cap: concurrent attempt renders per Moodle base URL, a pure plan.

Each running pod has `attempt concurrency` attempts in flight against its Moodle, so a job
loads its Moodle with concurrency x shards renders. Admission lets a waiting ArchiveJob in
only while its host's running jobs plus itself stay within the cap. Order stays FIFO per
host: once a job of a host has to wait, later jobs of that host wait behind it, while jobs
of other hosts go ahead. A job that alone needs more than the cap runs only when its host is
otherwise idle (layout.py already keeps its shards within the cap where it can).

A job counts from its admission until its pods are gone: while it holds a slot by its
recorded shards, and after that (finished, cancelled, deleted: its pods may still be
stopping, and a stopping runner may still be talking to Moodle) by each of its pods that
has not terminated, found by the host the pod is annotated with (`ANNOTATION_MOODLE_HOST`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..archivejob import GROUP
from .naming import owner_name

MOODLE_HOST_BUSY = "MoodleHostBusy"
# On job pods: the Moodle host they render from (`moodle_host`).
ANNOTATION_MOODLE_HOST = f"{GROUP}/moodle-host"
# Pods that have not terminated (a field selector of the API server's).
ALIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


def moodle_host(archivejob: dict[str, Any]) -> str:
    """The Moodle base URL a job reads from, normalised (scheme and host lower case, no
    trailing slash), so that one site counts as one host however the plugin spelt it."""
    url = str(((archivejob.get("spec") or {}).get("moodle") or {}).get("baseUrl") or "")
    parts = urlsplit(url.strip())
    netloc = parts.netloc.lower()
    default_port = {"http": ":80", "https": ":443"}.get(parts.scheme.lower())
    if default_port and netloc.endswith(default_port):
        netloc = netloc.removesuffix(default_port)
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def lingering_renders(
    pods: Iterable[dict[str, Any]], counted: Iterable[str], per_pod: int
) -> dict[str, int]:
    """Renders per host of pods that have not terminated (listed with `ALIVE_PODS`) whose
    ArchiveJob is not in `counted` (the jobs counted by their slot already): pods of jobs
    that ended or were deleted, still stopping. A pod without the host annotation (made
    before it existed) is not counted."""
    skip = set(counted)
    renders: dict[str, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        host = (meta.get("annotations") or {}).get(ANNOTATION_MOODLE_HOST)
        if not host or owner_name(pod) in skip:
            continue
        renders[host] = renders.get(host, 0) + per_pod
    return renders


@dataclass(frozen=True)
class HostPlan:
    # Waiting ArchiveJobs to admit now, in FIFO order.
    admit: list[dict[str, Any]]
    # Waiting ArchiveJobs held back by their host's cap: name -> a one-line reason.
    busy: dict[str, str] = field(default_factory=dict)
    # Renders in use per host after the planned admissions.
    renders: dict[str, int] = field(default_factory=dict)


def plan_host_admission(
    waiting: list[dict[str, Any]],
    running: Iterable[dict[str, Any]],
    free_slots: int,
    cap: int,
    renders_of: Callable[[dict[str, Any]], int],
    lingering: Mapping[str, int] | None = None,
) -> HostPlan:
    """Which of the FIFO-ordered `waiting` ArchiveJobs to admit into `free_slots` slots.

    `running` are the ArchiveJobs holding a slot; `renders_of` gives a job's renders
    (concurrency x shards, planned for a waiting job, recorded for a running one);
    `lingering`: renders per host of pods of other jobs still stopping (`lingering_renders`);
    `cap` 0 means no limit per host. Every waiting job its host holds back is in `busy`,
    also when no slot is free (the host is then what it waits for in the end).
    """
    used: dict[str, int] = dict(lingering or {})
    for aj in running:
        host = moodle_host(aj)
        used[host] = used.get(host, 0) + renders_of(aj)
    admit: list[dict[str, Any]] = []
    busy: dict[str, str] = {}
    blocked: dict[str, str] = {}  # host -> name of the first job waiting for it
    for aj in waiting:
        if cap <= 0 and len(admit) >= free_slots:
            break
        name = str(aj["metadata"]["name"])
        host = moodle_host(aj)
        need = renders_of(aj)
        if cap > 0 and host in blocked:
            busy[name] = (
                f"waiting behind {blocked[host]} for Moodle {host} "
                f"({used.get(host, 0)} of {cap} renders in use)"
            )
            continue
        in_use = used.get(host, 0)
        if cap > 0 and in_use > 0 and in_use + need > cap:
            blocked[host] = name
            busy[name] = (
                f"Moodle {host} is busy: {in_use} of {cap} renders in use, "
                f"this job needs {need}"
            )
            continue
        if len(admit) < free_slots:
            admit.append(aj)
            used[host] = in_use + need
    return HostPlan(admit=admit, busy=busy, renders=used)
