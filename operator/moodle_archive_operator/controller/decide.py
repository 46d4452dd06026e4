"""The ArchiveJob's status, decided from what is observed: a pure, level-based function.

`decide` reads the ArchiveJob (with the job pod's own report in `status.runnerPhase`,
`moodleStatus`, progress and artifact), the Job and its pods (an `Observation`),
and whether the token Secret exists, and answers: the operator-owned status fields
to patch, whether the job has reached a final state (and what Moodle must still be
told), the Events to post, and when to look again. Final states are sticky: the
reconciler never calls `decide` for an ArchiveJob that is already final.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from moodle_archive_job.moodle_api import JobStatus
from moodle_archive_job.reasons import MAX_REASON, one_line

from ..archivejob import Phase
from . import claimtrouble
from .claimtrouble import WORK_VOLUME_CREATE_FAILED
from .conditions import find, is_true, parse_time, set_condition, timestamp
from .hostcap import MOODLE_HOST_BUSY
from .jobspec import PERMANENT_EXIT_CODES
from .observe import Observation, Termination
from .settings import OperatorSettings

# Runner phases (progress.Phase) shown as the ArchiveJob's phase while the pod runs.
_RUNNER_DISPLAY = {
    "Running": Phase.RUNNING,
    "WaitingForBackup": Phase.WAITING_FOR_BACKUP,
    "Finalizing": Phase.FINALIZING,
}
_EVENT_DETAIL = 700  # Events hold 1024 characters
_MOODLE_FINAL = frozenset({"FAILED", "TIMEOUT", "FINISHED"})
_WARNING_REASONS = frozenset({
    "Unschedulable", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "QuotaExceeded", "FailedCreate",
    "Retrying", "OOMKilled", "Evicted", "WaitingForTokenSecret", "WorkVolumePending",
    WORK_VOLUME_CREATE_FAILED,
})  # fmt: skip


@dataclass(frozen=True)
class Final:
    phase: Phase
    reason: str
    message: str
    # What the operator must still tell Moodle (None: the pod did, or nobody can).
    notify: JobStatus | None = None
    # Delete the Job (cancel, pending timeout) before anything else.
    stop_job: bool = False
    # More than the one-line message, for the Event (a pod's own termination message).
    detail: str = ""


@dataclass(frozen=True)
class EventSpec:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    patch: dict[str, Any] = field(default_factory=dict)
    final: Final | None = None
    events: list[EventSpec] = field(default_factory=list)
    requeue_after: float | None = None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class _View:
    """The parts of an ArchiveJob `decide` reads."""

    name: str
    key: str  # uid (name if none): what per-job jitter is derived from
    generation: int | None
    created: datetime | None
    cancel: bool
    timeout_seconds: int
    status: dict[str, Any]
    conditions: list[dict[str, Any]]

    @classmethod
    def of(cls, archivejob: dict[str, Any]) -> _View:
        meta, spec = _dict(archivejob.get("metadata")), _dict(archivejob.get("spec"))
        status = _dict(archivejob.get("status"))
        conditions = status.get("conditions")
        return cls(
            name=str(meta.get("name")),
            key=str(meta.get("uid") or meta.get("name")),
            generation=meta.get("generation"),
            created=parse_time(meta.get("creationTimestamp")),
            cancel=bool(spec.get("cancelRequested")),
            timeout_seconds=int(spec.get("timeoutSeconds") or 0),
            status=status,
            conditions=[c for c in conditions if isinstance(c, dict)]
            if isinstance(conditions, list)
            else [],
        )

    @property
    def runner(self) -> str | None:
        return self.status.get("runnerPhase")

    @property
    def moodle_told_final(self) -> bool:
        """The pod told Moodle a final status itself (or Moodle finished the job)."""
        return self.status.get("moodleStatus") in _MOODLE_FINAL or self.runner in (
            "Failed",
            "TimedOut",
            "Succeeded",
        )

    def notify(self, status: JobStatus) -> JobStatus | None:
        return None if self.moodle_told_final else status


def decide(
    archivejob: dict[str, Any],
    obs: Observation | None,
    token_secret_exists: bool,
    now: datetime,
    settings: OperatorSettings,
    host_busy: str | None = None,
) -> Decision:
    """`host_busy`: why admission holds this waiting job back for its Moodle host, if it does."""
    view = _View.of(archivejob)
    admitted = obs is not None or is_true(view.conditions, "Admitted")
    final = _final(view, obs, admitted, token_secret_exists, now, settings)
    if final is not None:
        return _finish(view, obs, final, now)
    if not admitted:
        return _waiting(view, token_secret_exists, now, settings, host_busy)
    assert obs is not None  # admitted and not final: the Job exists
    return _admitted(view, obs, now, settings)


# --- final states ------------------------------------------------------------------------------


def _final(
    view: _View,
    obs: Observation | None,
    admitted: bool,
    secret: bool,
    now: datetime,
    settings: OperatorSettings,
) -> Final | None:
    # The pod's own last message, if the pod ever reported (the operator writes it too).
    message = str(view.status.get("message") or "") if view.runner else ""
    if view.runner == "Succeeded":
        return Final(Phase.SUCCEEDED, "Succeeded", message or "Moodle accepted the archive")
    if view.cancel:
        running = obs is not None and obs.job_finished is None
        return Final(
            Phase.CANCELLED,
            "Cancelled",
            "cancelled on request (spec.cancelRequested)",
            view.notify(JobStatus.FAILED),
            stop_job=running,
        )
    if obs is not None and obs.job_finished == "Complete":
        return Final(Phase.SUCCEEDED, "Succeeded", message or "the job pod completed")
    if obs is not None and obs.job_finished == "Failed":
        return _failure(view, obs, message)
    if obs is None and admitted:
        return Final(
            Phase.FAILED,
            "JobLost",
            "the Job of this ArchiveJob was deleted before it finished",
            view.notify(JobStatus.FAILED),
        )
    if not admitted and not secret:
        waited = (now - view.created).total_seconds() if view.created else 0.0
        if waited >= settings.token_secret_timeout_sec:
            return Final(
                Phase.FAILED,
                "TokenSecretMissing",
                f"the token Secret did not appear within {settings.token_secret_timeout_sec:g} s",
            )
    if obs is not None and obs.running_since is None:
        pending = _pending_for(view, now)
        if pending >= settings.pending_timeout_sec:
            problem = obs.pending_problem
            detail = f" ({problem.reason}: {problem.message})" if problem else ""
            return Final(
                Phase.FAILED,
                problem.reason if problem else "PendingTimeout",
                f"the job pod did not start within {settings.pending_timeout_sec:g} s{detail}",
                view.notify(JobStatus.FAILED),
                stop_job=True,
            )
    return None


def _failure(view: _View, obs: Observation, message: str) -> Final:
    last = obs.last_failure
    code = last.exit_code if last is not None else None
    by_policy = obs.job_reason == "PodFailurePolicy"
    if view.runner == "TimedOut" or (by_policy and code == 3):
        return Final(
            Phase.TIMED_OUT,
            "RunnerTimedOut",
            message or "the runner reached its time limit",
            view.notify(JobStatus.TIMEOUT),
        )
    if view.runner == "Failed" or (by_policy and code == 1):
        return Final(
            Phase.FAILED,
            "RunnerFailed",
            message or (last.message if last else "the runner failed"),
            view.notify(JobStatus.FAILED),
            detail=last.detail if last else "",
        )
    if obs.job_reason == "DeadlineExceeded":
        return Final(
            Phase.TIMED_OUT,
            "DeadlineExceeded",
            f"the job ran longer than its limit of {view.timeout_seconds} s",
            view.notify(JobStatus.TIMEOUT),
        )
    if by_policy and code == 2:
        return Final(
            Phase.FAILED,
            "InvalidInput",
            last.message if last else "the runner refused its input",
            view.notify(JobStatus.FAILED),
        )
    if last is not None:
        tries = f" (after {obs.failed_pods} attempts)" if obs.failed_pods > 1 else ""
        reason = "PodFailed" if last.reason == "Error" else last.reason
        return Final(
            Phase.FAILED, reason, last.message + tries, view.notify(JobStatus.FAILED),
            detail=last.detail,
        )  # fmt: skip
    return Final(
        Phase.FAILED,
        obs.job_reason or "JobFailed",
        obs.job_message or "the Job failed",
        view.notify(JobStatus.FAILED),
    )


def _finish(view: _View, obs: Observation | None, final: Final, now: datetime) -> Decision:
    succeeded = final.phase is Phase.SUCCEEDED
    conditions = view.conditions
    gen = view.generation
    if find(conditions, "PodRunning") is not None:
        conditions = set_condition(
            conditions, "PodRunning", "False", "Completed" if succeeded else final.reason,
            "the job pod finished" if succeeded else final.message, now, gen,
        )  # fmt: skip
    if succeeded and view.runner == "Succeeded":
        conditions = set_condition(
            conditions, "Uploaded", "True", "ArchiveAccepted", final.message, now, gen
        )
    elif not succeeded:
        conditions = set_condition(
            conditions, "Uploaded", "False", final.reason, final.message, now, gen
        )
    conditions = set_condition(
        conditions, "Succeeded", "True" if succeeded else "False", final.reason, final.message,
        now, gen,
    )  # fmt: skip
    desired: dict[str, Any] = {
        "phase": final.phase.value,
        "conditions": conditions,
        "message": final.message,
        "completionTime": timestamp(now),
    }
    if obs is not None:
        desired["jobName"] = obs.job_name
        if obs.running_since and not view.status.get("startTime"):
            desired["startTime"] = timestamp(obs.running_since)
    if succeeded:
        desired["progress"] = 100
    return _decision(view, desired, final=final)


# --- not final ---------------------------------------------------------------------------------


def _pending_for(view: _View, now: datetime) -> float:
    admitted = find(view.conditions, "Admitted")
    since = parse_time(admitted.get("lastTransitionTime")) if admitted else None
    return (now - since).total_seconds() if since else 0.0


def _waiting(
    view: _View, secret: bool, now: datetime, settings: OperatorSettings, host_busy: str | None
) -> Decision:
    gen = view.generation
    conditions = view.conditions
    if not secret:
        reason, message = "WaitingForTokenSecret", "waiting for the token Secret to appear"
        phase = Phase.PENDING
        waited = (now - view.created).total_seconds() if view.created else 0.0
        requeue: float | None = max(0.2, min(1.0, settings.token_secret_timeout_sec - waited))
    elif (refused := claimtrouble.waiting_message(view.status, view.key, now)) is not None:
        # The work volume's claim was refused; the admitter tries again when it is due.
        reason, (message, wait) = WORK_VOLUME_CREATE_FAILED, refused
        phase = Phase.QUEUED
        requeue = max(0.2, wait)
    elif host_busy:
        reason, message = MOODLE_HOST_BUSY, host_busy
        phase = Phase.QUEUED
        requeue = None
    else:
        reason, message = "Queued", "waiting for a free slot"
        phase = Phase.QUEUED
        requeue = None
    conditions = set_condition(conditions, "Admitted", "False", reason, message, now, gen)
    conditions = set_condition(conditions, "Succeeded", "Unknown", reason, message, now, gen)
    desired: dict[str, Any] = {"phase": phase.value, "conditions": conditions, "message": message}
    if phase is Phase.QUEUED and not view.status.get("queuedAt"):
        desired["queuedAt"] = timestamp(now)
    return _decision(view, desired, requeue_after=requeue)


def _admitted(view: _View, obs: Observation, now: datetime, settings: OperatorSettings) -> Decision:
    gen = view.generation
    conditions = view.conditions
    if not is_true(conditions, "Admitted"):
        conditions = set_condition(
            conditions, "Admitted", "True", "Admitted", f"running as Job {obs.job_name}", now, gen
        )
    desired: dict[str, Any] = {"jobName": obs.job_name}
    requeue: float | None = None
    if obs.scheduled is not None:
        problem = obs.pending_problem
        if obs.scheduled:
            conditions = set_condition(
                conditions, "PodScheduled", "True", "Scheduled", "", now, gen
            )
        elif problem is not None and problem.reason == "Unschedulable":
            conditions = set_condition(
                conditions, "PodScheduled", "False", problem.reason, problem.message, now, gen
            )
    if obs.running_now:
        phase = _RUNNER_DISPLAY.get(view.runner or "", Phase.RUNNING)
        reason, message = phase.value, ""
        conditions = set_condition(
            conditions, "PodRunning", "True", "ContainerRunning", "", now, gen
        )
        if obs.running_since and not view.status.get("startTime"):
            desired["startTime"] = timestamp(obs.running_since)
    elif obs.last_failure is not None and _fails_the_job(obs.last_failure):
        # No pod follows (pod failure policy): the end comes with the Job's Failed condition,
        # a moment later. Until then the phase and the pod's own line stand.
        phase = _RUNNER_DISPLAY.get(view.runner or "", Phase.RUNNING)
        reason = "JobFailing"
        message = str(view.status.get("message") or "") if view.runner else obs.last_failure.message
        conditions = set_condition(conditions, "PodRunning", "False", reason, message, now, gen)
    else:
        phase = Phase.PENDING
        if obs.last_failure is not None:
            reason = "Retrying"
            message = f"a job pod failed ({obs.last_failure.reason}), starting another: " + (
                obs.last_failure.message
            )
        elif obs.pending_problem is not None:
            reason, message = obs.pending_problem.reason, obs.pending_problem.message
        else:
            reason = obs.pending_state or "PodCreating"
            message = "waiting for the job pod to start"
        conditions = set_condition(conditions, "PodRunning", "False", reason, message, now, gen)
        if obs.running_since is None:
            left = settings.pending_timeout_sec - _pending_for(view, now)
            requeue = max(0.2, left)
    conditions = set_condition(conditions, "Succeeded", "Unknown", reason, message, now, gen)
    desired.update(phase=phase.value, conditions=conditions)
    if message:
        desired["message"] = message
    elif view.status.get("phase") not in _RUNNER_DISPLAY.values():
        # While the pod runs, `message` is the pod's; the operator only says it started.
        desired["message"] = "the job pod is running"
    return _decision(view, desired, requeue_after=requeue)


def _fails_the_job(last: Termination) -> bool:
    """A pod end the Job's pod failure policy fails the Job (or its index) on: the runner's
    own exit codes, not an eviction or a deadline."""
    return last.reason not in ("Evicted", "DeadlineExceeded") and (
        last.exit_code in PERMANENT_EXIT_CODES
    )


# --- the patch and its Events ------------------------------------------------------------------


def _succeeded_reason(conditions: list[dict[str, Any]]) -> str:
    cond = find(conditions, "Succeeded")
    return str(cond.get("reason") or "") if cond else ""


def _decision(
    view: _View,
    desired: dict[str, Any],
    *,
    final: Final | None = None,
    requeue_after: float | None = None,
) -> Decision:
    current = view.status
    if view.generation is not None:
        desired["observedGeneration"] = view.generation
    if "message" in desired:
        desired["message"] = one_line(str(desired["message"]))
    patch = {k: v for k, v in desired.items() if current.get(k) != v}
    events: list[EventSpec] = []
    old = (current.get("phase"), _succeeded_reason(view.conditions))
    new_reason = _succeeded_reason(desired.get("conditions", view.conditions))
    new = (desired.get("phase", old[0]), new_reason)
    if new != old and new_reason:
        failed = final is not None and final.phase is not Phase.SUCCEEDED
        warning = failed or new_reason in _WARNING_REASONS
        message = str(desired.get("message") or current.get("message") or new[0])
        if final is not None and _condensed(final.detail):
            # The Event keeps (up to its size limit) what the condition message condensed.
            message = f"{message}; the pod said: {one_line(final.detail, _EVENT_DETAIL)}"
        events.append(EventSpec("Warning" if warning else "Normal", new_reason, message))
    return Decision(patch=patch, final=final, events=events, requeue_after=requeue_after)


def _condensed(detail: str) -> bool:
    return "\n" in detail.strip() or len(detail) > MAX_REASON


def admitted_patch(archivejob: dict[str, Any], job_name: str, now: datetime) -> dict[str, Any]:
    """The status the admitter writes when it has created an ArchiveJob's Job."""
    view = _View.of(archivejob)
    message = f"admitted; running as Job {job_name}"
    conditions = set_condition(
        view.conditions, "Admitted", "True", "Admitted", message, now, view.generation
    )
    conditions = set_condition(
        conditions, "Succeeded", "Unknown", "Admitted", message, now, view.generation
    )
    return {
        "phase": Phase.PENDING.value,
        "conditions": conditions,
        "jobName": job_name,
        "message": message,
    }


def finish_now(archivejob: dict[str, Any], final: Final, now: datetime) -> Decision:
    """The decision to end an ArchiveJob for a reason found outside `decide` (a bad spec)."""
    return _finish(_View.of(archivejob), None, final, now)
