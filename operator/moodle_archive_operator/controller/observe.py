"""What the Job, its pods and the Job's FailedCreate Events say, as one `Observation`.

Pure functions over the objects as the API server returns them (plain dicts,
read tolerantly). Reasons are CamelCase and end up in the ArchiveJob's conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from moodle_archive_job.reasons import condense

from . import shard_observe
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
    message: str  # one line naming the cause (reasons.condense)
    exit_code: int | None
    detail: str = ""  # the container's termination message as it was (for the Event)


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
    detail = str(terminated.get("message") or "").strip()
    # Under FallbackToLogsOnError a runner that wrote no message leaves its log tail here.
    message = condense(detail)
    if reason == "OOMKilled":
        return Termination("OOMKilled", message or "the runner ran out of memory", code, detail)
    summary = f"the runner exited with code {code}" if code is not None else "the pod failed"
    return Termination(reason, f"{summary}: {message}" if message else summary, code, detail)


def quota_problem(failed_create_messages: list[str]) -> Problem | None:
    """A Job controller `FailedCreate` Event: quota, LimitRange or admission refused the pod."""
    if not failed_create_messages:
        return None
    message = failed_create_messages[-1]
    reason = "QuotaExceeded" if "exceeded quota" in message else "FailedCreate"
    return Problem(reason, message)


def _created(obj: dict[str, Any]) -> str:
    return str(_dict(obj.get("metadata")).get("creationTimestamp") or "")


def _is_running(pod: dict[str, Any]) -> bool:
    return _dict(pod.get("status")).get("phase") == "Running" and started_at(pod) is not None


def observe(
    job: dict[str, Any], pods: list[dict[str, Any]], failed_create_messages: list[str]
) -> Observation:
    """One Job and its pods; an Indexed Job (shards) is summarised over the newest live pod of
    each index: running while any shard runs, pending problems of the shards that do not."""
    finished, reason, message = job_finish(job)
    ordered = sorted(pods, key=lambda p: (_created(p), str(p["metadata"].get("name"))))
    starts = [s for s in (started_at(p) for p in ordered) if s is not None]
    live = [
        p for p in ordered if _dict(p.get("status")).get("phase") in (None, "Pending", "Running")
    ]
    live = [p for p in live if not _dict(p.get("metadata")).get("deletionTimestamp")]
    indexed = shard_observe.is_indexed(job)
    current = shard_observe.current_pods(live) if indexed else live[-1:]
    failed = [p for p in ordered if termination(p) is not None]
    problem: Problem | None = None
    state = ""
    scheduled: bool | None = None
    running_now = False
    if current:
        running_now = any(_is_running(p) for p in current)
        lagging = [p for p in current if not _is_running(p)] or current[-1:]
        problem = next((x for x in map(pending_problem, lagging) if x is not None), None)
        scheduled = all(_dict(p.get("spec")).get("nodeName") for p in current)
        focus = lagging[0]
        state = waiting(focus)[0] or (
            "ContainerCreating" if _dict(focus.get("spec")).get("nodeName") else "Scheduling"
        )
    elif not ordered and finished is None:
        problem = quota_problem(failed_create_messages)
        state = "PodCreating"
    last_failure: Termination | None = None
    if indexed:
        decisive = shard_observe.decisive_pod(job, failed, message)
        if decisive is not None:
            found = termination(decisive)
            assert found is not None
            last_failure = shard_observe.labelled(found, decisive, shard_observe.shard_total(job))
    elif failed:
        last_failure = termination(failed[-1])
    return Observation(
        job_name=str(job["metadata"]["name"]),
        job_finished=finished,
        job_reason=reason,
        job_message=message,
        pods=len(ordered),
        failed_pods=len(failed),
        running_since=min(starts) if starts else None,
        running_now=running_now,
        scheduled=scheduled,
        pending_problem=problem,
        pending_state=state,
        last_failure=last_failure,
    )


def with_work_volume(
    obs: Observation,
    claim_name: str,
    claim: dict[str, Any] | None,
    warnings: list[str],
) -> Observation:
    """The observation with the state of the job's work volume folded in: a pod waiting for
    its PVC shows why (`WorkVolumePending`: the claim is missing, or Pending with a warning
    such as ProvisioningFailed, or the scheduler's complaint), and a claim being provisioned
    normally (WaitForFirstConsumer) shows as the pending state `ProvisioningWorkVolume`."""
    if obs.running_now or obs.job_finished is not None or obs.scheduled:
        return obs
    status = _dict(_dict(claim).get("status"))
    if claim is not None and status.get("phase") != "Pending":
        return obs
    storage_class = _dict(_dict(claim).get("spec")).get("storageClassName")
    if claim is None:
        what = f"the work volume claim {claim_name} does not exist"
    else:
        what = f"the work volume {claim_name} (StorageClass {storage_class}) is not bound yet"
    details = [*warnings[-1:]]
    if obs.pending_problem is not None:
        details.append(f"{obs.pending_problem.reason}: {obs.pending_problem.message}")
    if claim is not None and not details:
        return replace(obs, pending_state="ProvisioningWorkVolume")
    message = f"{what}: {'; '.join(details)}" if details else what
    return replace(obs, pending_problem=Problem("WorkVolumePending", message))
