"""The final status as a duty: when to (re)deliver it to Moodle and what each try means.

A final ArchiveJob owes Moodle its end while `status.pendingMoodleStatus` is set: by the
job pod when it could not deliver FAILED/TIMEOUT (or, FINISHED, the processing call of
an uploaded archive: `pendingArtifact`), or by the operator when the pod could not tell
Moodle at all (killed, deleted, cancelled, deadline). Everything here is pure and
level-based: the next try is derived from the status (`moodleDeliveryAttempts`,
`lastMoodleDeliveryTime`) and the token's deadline, so a restarted operator carries on
where the last one stopped. The condition `MoodleNotified` says how it ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from moodle_archive_job.final_status import PendingArtifact, Verdict, describe, verdict
from moodle_archive_job.moodle_api import JobStatus
from moodle_archive_job.reasons import one_line

from ..archivejob import Phase, token_deadline
from .backoff import Backoff
from .conditions import parse_time, set_condition, timestamp
from .decide import EventSpec

CONDITION = "MoodleNotified"
_RUNNER_TOLD = frozenset({"Failed", "TimedOut", "Succeeded"})
_MOODLE_FINAL = frozenset({"FAILED", "TIMEOUT", "FINISHED"})


@dataclass(frozen=True)
class Duty:
    status: JobStatus
    deadline: datetime | None
    key: str
    artifact: PendingArtifact | None = None
    attempts: int = 0
    last_attempt: datetime | None = None

    @classmethod
    def of(cls, archivejob: dict[str, Any]) -> Duty | None:
        """The open duty of a final ArchiveJob, if any."""
        status = archivejob.get("status") or {}
        pending = status.get("pendingMoodleStatus")
        if pending not in _MOODLE_FINAL:
            return None
        artifact = None
        if pending == JobStatus.FINISHED:
            try:
                artifact = PendingArtifact.model_validate(status.get("pendingArtifact"))
            except ValidationError:
                pending = JobStatus.FAILED  # cannot process what is not described: fail it
        return cls(
            status=JobStatus(pending),
            deadline=token_deadline(archivejob),
            key=str(archivejob["metadata"].get("uid") or archivejob["metadata"]["name"]),
            artifact=artifact,
            attempts=int(status.get("moodleDeliveryAttempts") or 0),
            last_attempt=parse_time(status.get("lastMoodleDeliveryTime")),
        )

    def tried(self, now: datetime) -> Duty:
        return replace(self, attempts=self.attempts + 1, last_attempt=now)


@dataclass(frozen=True)
class Step:
    action: Literal["attempt", "wait", "expire"]
    after_sec: float = 0.0


def plan(duty: Duty, now: datetime, backoff: Backoff) -> Step:
    """Try now, wait `after_sec` (then plan again), or give up: the token has expired.

    The first try is always made, also past the deadline (a job that queued long may end
    after it; Moodle's answer says whether the token still works).
    """
    if duty.attempts == 0 or duty.last_attempt is None:
        return Step("attempt")
    if duty.deadline is not None and now >= duty.deadline:
        return Step("expire")
    due = duty.last_attempt + timedelta(seconds=backoff.delay(duty.attempts, duty.key))
    if duty.deadline is not None:
        last_chance = duty.deadline - timedelta(seconds=backoff.last_chance_sec)
        if duty.last_attempt < last_chance:
            due = min(due, last_chance)
        if due >= duty.deadline:
            return Step("wait", (duty.deadline - now).total_seconds())
    if due <= now:
        return Step("attempt")
    return Step("wait", (due - now).total_seconds())


# --- what a try (or giving up) writes ----------------------------------------------------------


@dataclass
class Outcome:
    patch: dict[str, Any]
    events: list[EventSpec] = field(default_factory=list)
    # The duty is over (delivered or given up): the token Secret may go.
    closed: bool = False


_REASONS = {
    Verdict.DELIVERED: ("True", "Delivered"),
    Verdict.ALREADY_FINAL: ("True", "AlreadyFinal"),
    Verdict.REFUSED: ("False", "Refused"),
    Verdict.RETRY: ("False", "Redelivering"),
}
EVENTS: dict[Verdict, tuple[Literal["Normal", "Warning"], str]] = {
    Verdict.DELIVERED: ("Normal", "MoodleNotified"),
    Verdict.ALREADY_FINAL: ("Normal", "MoodleAlreadyFinal"),
    Verdict.REFUSED: ("Warning", "MoodleRefused"),
    Verdict.RETRY: ("Warning", "MoodleNotifyFailed"),
}


def _what(status: JobStatus) -> str:
    return "the archive's processing" if status is JobStatus.FINISHED else str(status)


def processed_earlier(duty: Duty, result: Verdict) -> bool:
    """A redelivered processing call answered "already final": an earlier processing call
    reached Moodle, which stored the archive, set FINISHED and deleted the token (spec 3.8,
    4.5), so its answer was what got lost. (Moodle also ends a job when a teacher deletes
    it, or lazily past its timeout; neither happens to a job whose token is still within
    its lifetime and whose archive is in the draft area, except by a teacher's hand.)"""
    return duty.status is JobStatus.FINISHED and result is Verdict.ALREADY_FINAL


def tried_message(duty: Duty, answer: str) -> tuple[Verdict, str]:
    """The verdict on a try and its one-line account (`duty` counts that try)."""
    result = verdict(answer)
    what, tries = _what(duty.status), f"try {duty.attempts}"
    already = (
        f"Moodle had already processed the archive ({describe(answer)} to {tries}: an "
        "earlier processing call reached it and Moodle deleted the token)"
        if processed_earlier(duty, result)
        else f"Moodle had already ended the job ({describe(answer)}); {what} was not needed"
    )
    message = {
        Verdict.DELIVERED: f"Moodle was told {what} ({tries})",
        Verdict.ALREADY_FINAL: already,
        Verdict.REFUSED: f"Moodle refused {what}: {describe(answer)}",
        Verdict.RETRY: f"could not tell Moodle {what} ({tries}): {describe(answer)}",
    }[result]
    return result, message


def _close(patch: dict[str, Any]) -> dict[str, Any]:
    return {**patch, "pendingMoodleStatus": None, "pendingArtifact": None}


def attempted(
    archivejob: dict[str, Any], duty: Duty, answer: str, now: datetime, backoff: Backoff
) -> Outcome:
    """The status after one try that got `answer` (`duty` as it was before the try)."""
    done = duty.tried(now)
    result, message = tried_message(done, answer)
    patch: dict[str, Any] = {
        "moodleDeliveryAttempts": done.attempts,
        "lastMoodleDeliveryTime": timestamp(now),
    }
    if result is Verdict.RETRY:
        step = plan(done, now, backoff)
        if step.action == "wait":
            message += f"; next try in {step.after_sec:.0f} s"
    cond_status, reason = _REASONS[result]
    conditions = _conditions(archivejob)
    conditions = set_condition(conditions, CONDITION, cond_status, reason, message, now,
                               _generation(archivejob))  # fmt: skip
    event_type, event_reason = EVENTS[result]
    events = [EventSpec(event_type, event_reason, message)]
    if result is Verdict.RETRY:
        return Outcome({**patch, "conditions": conditions}, events)
    patch = _close(patch)
    if result is Verdict.DELIVERED or processed_earlier(duty, result):
        patch["moodleStatus"] = str(duty.status)
        if duty.status is JobStatus.FINISHED:
            conditions = _succeeded(archivejob, conditions, now)
            accepted = ("Moodle accepted the archive when its processing was redelivered"
                        if result is Verdict.DELIVERED else message)  # fmt: skip
            patch.update(phase=Phase.SUCCEEDED.value, message=one_line(accepted))
    patch["conditions"] = conditions
    return Outcome(patch, events, closed=True)


def expired(archivejob: dict[str, Any], duty: Duty, now: datetime) -> Outcome:
    when = timestamp(duty.deadline) if duty.deadline else "its deadline"
    message = (
        f"gave up telling Moodle {_what(duty.status)} after {duty.attempts} tries: "
        f"the token expired at {when}"
    )
    conditions = set_condition(_conditions(archivejob), CONDITION, "False", "TokenExpired",
                               message, now, _generation(archivejob))  # fmt: skip
    return Outcome(
        _close({"conditions": conditions}),
        [EventSpec("Warning", "TokenExpired", message)],
        closed=True,
    )


def settled(archivejob: dict[str, Any], now: datetime) -> Outcome | None:
    """For a final ArchiveJob that owes Moodle nothing and shows no MoodleNotified yet."""
    status = archivejob.get("status") or {}
    conditions = _conditions(archivejob)
    if any(c.get("type") == CONDITION for c in conditions):
        return None
    if status.get("runnerPhase") in _RUNNER_TOLD or status.get("moodleStatus") in _MOODLE_FINAL:
        cond: tuple[Literal["True", "False"], str, str] = (
            "True", "NotNeeded", "the job pod told Moodle itself")  # fmt: skip
    elif status.get("phase") == Phase.SUCCEEDED.value:
        cond = ("True", "NotNeeded", "Moodle ended the job itself")
    else:
        cond = ("False", "NoToken", "there was no token to tell Moodle with")
    conditions = set_condition(conditions, CONDITION, *cond, now, _generation(archivejob))
    return Outcome({"conditions": conditions}, closed=True)


def _conditions(archivejob: dict[str, Any]) -> list[dict[str, Any]]:
    conditions = (archivejob.get("status") or {}).get("conditions")
    return [c for c in conditions if isinstance(c, dict)] if isinstance(conditions, list) else []


def _generation(archivejob: dict[str, Any]) -> int | None:
    return archivejob["metadata"].get("generation")


def _succeeded(
    archivejob: dict[str, Any], conditions: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    gen, message = _generation(archivejob), "Moodle accepted the archive"
    conditions = set_condition(conditions, "Uploaded", "True", "ArchiveAccepted", message, now,
                               gen)  # fmt: skip
    return set_condition(conditions, "Succeeded", "True", "ArchiveAccepted", message, now, gen)
