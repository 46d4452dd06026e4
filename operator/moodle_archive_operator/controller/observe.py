"""What the Job, its pods and the Job's FailedCreate Events say, as one `Observation`.

Pure functions over the objects as the API server returns them (plain dicts,
read tolerantly). Reasons are CamelCase and end up in the ArchiveJob's conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .conditions import parse_time
from .naming import CONTAINER_NAME

# Container waiting reasons that mean "this will not start by itself".
PROBLEM_WAITING_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)

JobFinish = Literal["Complete", "Failed"]


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Termination:
    reason: str  # OOMKilled, Evicted, DeadlineExceeded, Error, ...
    message: str
    exit_code: int | None


@dataclass(frozen=True)
class Observation:
    job_name: str
    job_finished: JobFinish | None = None
    # The Job controller's reason: DeadlineExceeded, PodFailurePolicy, BackoffLimitExceeded.
    job_reason: str = ""
    job_message: str = ""
    pods: int = 0
    failed_pods: int = 0
    # When the runner container of any pod of this Job first ran.
    running_since: datetime | None = None
    running_now: bool = False
    scheduled: bool | None = None
    # Why the current pod is not running yet (Unschedulable, ImagePullBackOff, QuotaExceeded).
    pending_problem: Problem | None = None
    pending_state: str = ""  # ContainerCreating, PodInitializing, Scheduling, ...
    # How the most recent finished pod ended, if one failed.
    last_failure: Termination | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def job_finish(job: dict[str, Any]) -> tuple[JobFinish | None, str, str]:
    for cond in _list(_dict(job.get("status")).get("conditions")):
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"], str(cond.get("reason") or ""), str(cond.get("message") or "")
    return None, "", ""


def is_job_finished(job: dict[str, Any]) -> bool:
    return job_finish(job)[0] is not None


def _runner_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = _list(_dict(pod.get("status")).get("containerStatuses"))
    named = [s for s in statuses if s.get("name") == CONTAINER_NAME]
    return _dict((named or statuses or [{}])[0])


def started_at(pod: dict[str, Any]) -> datetime | None:
    """When the runner container started, if it ever did."""
    state = _dict(_runner_status(pod).get("state"))
    for key in ("running", "terminated"):
        when = parse_time(_dict(state.get(key)).get("startedAt"))
        if when is not None:
            return when
    return None


def waiting(pod: dict[str, Any]) -> tuple[str, str]:
    status = _dict(pod.get("status"))
    for container in [
        *_list(status.get("initContainerStatuses")),
        *_list(status.get("containerStatuses")),
    ]:
        wait = _dict(_dict(container.get("state")).get("waiting"))
        if wait.get("reason"):
            return str(wait["reason"]), str(wait.get("message") or "")
    return "", ""


def pending_problem(pod: dict[str, Any]) -> Problem | None:
    status = _dict(pod.get("status"))
    for cond in _list(status.get("conditions")):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return Problem(
                str(cond.get("reason") or "Unschedulable"), str(cond.get("message") or "")
            )
    reason, message = waiting(pod)
    if reason in PROBLEM_WAITING_REASONS:
        return Problem(reason, message)
    return None


def termination(pod: dict[str, Any]) -> Termination | None:
    """How a failed pod ended (None for a pod that has not failed)."""
    status = _dict(pod.get("status"))
    if status.get("phase") != "Failed":
        return None
    terminated = _dict(_dict(_runner_status(pod).get("state")).get("terminated"))
    exit_code = terminated.get("exitCode")
    code = exit_code if isinstance(exit_code, int) else None
    disruption = next(
        (
            c
            for c in _list(status.get("conditions"))
            if c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        ),
        None,
    )
    if status.get("reason") == "Evicted" or disruption is not None:
        why = str(status.get("message") or _dict(disruption).get("message") or "")
        detail = _dict(disruption).get("reason")
        return Termination("Evicted", f"{detail}: {why}" if detail else why, code)
    if status.get("reason") == "DeadlineExceeded":
        return Termination("DeadlineExceeded", str(status.get("message") or ""), code)
    reason = str(terminated.get("reason") or "Error")
    message = str(terminated.get("message") or "").strip()
    if reason == "OOMKilled":
        return Termination("OOMKilled", message or "the runner ran out of memory", code)
    summary = f"the runner exited with code {code}" if code is not None else "the pod failed"
    return Termination(reason, f"{summary}: {message}" if message else summary, code)


def quota_problem(failed_create_messages: list[str]) -> Problem | None:
    """A Job controller `FailedCreate` Event: quota, LimitRange or admission refused the pod."""
    if not failed_create_messages:
        return None
    message = failed_create_messages[-1]
    reason = "QuotaExceeded" if "exceeded quota" in message else "FailedCreate"
    return Problem(reason, message)


def _created(obj: dict[str, Any]) -> str:
    return str(_dict(obj.get("metadata")).get("creationTimestamp") or "")


def observe(
    job: dict[str, Any], pods: list[dict[str, Any]], failed_create_messages: list[str]
) -> Observation:
    finished, reason, message = job_finish(job)
    ordered = sorted(pods, key=lambda p: (_created(p), str(p["metadata"].get("name"))))
    starts = [s for s in (started_at(p) for p in ordered) if s is not None]
    live = [
        p for p in ordered if _dict(p.get("status")).get("phase") in (None, "Pending", "Running")
    ]
    live = [p for p in live if not _dict(p.get("metadata")).get("deletionTimestamp")]
    current = live[-1] if live else None
    failures = [t for t in (termination(p) for p in ordered) if t is not None]
    problem: Problem | None = None
    state = ""
    scheduled: bool | None = None
    running_now = False
    if current is not None:
        phase = _dict(current.get("status")).get("phase")
        running_now = phase == "Running" and started_at(current) is not None
        problem = pending_problem(current)
        scheduled = bool(_dict(current.get("spec")).get("nodeName"))
        state = waiting(current)[0] or ("Scheduling" if not scheduled else "ContainerCreating")
    elif not ordered and finished is None:
        problem = quota_problem(failed_create_messages)
        state = "PodCreating"
    return Observation(
        job_name=str(job["metadata"]["name"]),
        job_finished=finished,
        job_reason=reason,
        job_message=message,
        pods=len(ordered),
        failed_pods=len(failures),
        running_since=min(starts) if starts else None,
        running_now=running_now,
        scheduled=scheduled,
        pending_problem=problem,
        pending_state=state,
        last_failure=failures[-1] if failures else None,
    )
