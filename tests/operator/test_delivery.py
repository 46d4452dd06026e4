"""The delivery duty's pure plan: backoff schedule, expiry, restart continuity, and what each
answer writes into the ArchiveJob's status."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from moodle_archive_job.final_status import NO_TOKEN, UNREACHABLE, PendingArtifact
from moodle_archive_job.moodle_api import JobStatus
from moodle_archive_operator.controller.conditions import find, timestamp
from moodle_archive_operator.controller.delivery import (
    Backoff,
    Duty,
    attempted,
    expired,
    plan,
    settled,
)
from tests.operator.objects import T0, archivejob

BACKOFF = Backoff(base_sec=5, cap_sec=300, factor=2, jitter=0.2, last_chance_sec=15)
ARTIFACT = PendingArtifact(
    component="user", contextid=18, userid=3, filearea="draft", filename="a.zip", filepath="/",
    itemid=1234, sha256="ab" * 32,
)  # fmt: skip


def owing(pending: str = "FAILED", timeout: int = 3600, **status: Any) -> dict[str, Any]:
    aj = archivejob(timeout=timeout, status={"phase": "Failed", "pendingMoodleStatus": pending,
                                             "conditions": [], **status})  # fmt: skip
    return aj


def apply(aj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch of the status, as the API server applies it."""
    status = dict(aj.get("status") or {})
    for key, value in patch.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return {**aj, "status": status}


def test_backoff_is_exponential_capped_and_jittered_per_job() -> None:
    delays = [BACKOFF.delay(n, "uid-a") for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        raw = min(300, 5 * 2 ** (n - 1))
        assert 0.8 * raw <= delay <= 1.2 * raw
    assert max(delays) <= 360 and delays[-1] >= 240  # capped
    assert delays == [BACKOFF.delay(n, "uid-a") for n in range(1, 12)]  # the same after a restart
    others = [BACKOFF.delay(n, "uid-b") for n in range(1, 12)]
    assert others != delays  # two jobs failing together do not retry in lockstep


def test_first_try_at_once_even_past_the_deadline() -> None:
    duty = Duty.of(owing(timeout=60))
    assert duty is not None and duty.attempts == 0
    assert plan(duty, T0, BACKOFF).action == "attempt"
    assert plan(duty, T0 + timedelta(hours=5), BACKOFF).action == "attempt"


def test_later_tries_wait_for_the_backoff_then_expire_at_the_deadline() -> None:
    deadline = T0 + timedelta(seconds=3600)
    duty = Duty(JobStatus.FAILED, deadline, "k", attempts=3, last_attempt=T0)
    gap = BACKOFF.delay(3, "k")
    step = plan(duty, T0 + timedelta(seconds=1), BACKOFF)
    assert step.action == "wait" and step.after_sec == pytest.approx(gap - 1)
    assert plan(duty, T0 + timedelta(seconds=gap), BACKOFF).action == "attempt"
    assert plan(duty, deadline, BACKOFF).action == "expire"


def test_a_last_try_just_before_the_token_expires_then_none() -> None:
    deadline = T0 + timedelta(seconds=100)
    duty = Duty(JobStatus.TIMEOUT, deadline, "k", attempts=6, last_attempt=T0)  # backoff ~160 s
    step = plan(duty, T0, BACKOFF)
    assert step.action == "wait" and step.after_sec == pytest.approx(85)  # deadline - 15 s
    last = duty.tried(T0 + timedelta(seconds=85))
    step = plan(last, T0 + timedelta(seconds=85), BACKOFF)
    assert step.action == "wait" and step.after_sec == pytest.approx(15)  # then give up
    assert plan(last, deadline, BACKOFF).action == "expire"


def test_the_schedule_comes_from_the_status_so_a_restart_continues_it() -> None:
    aj = owing(moodleDeliveryAttempts=4, lastMoodleDeliveryTime=timestamp(T0))
    duty = Duty.of(aj)
    assert duty is not None and (duty.attempts, duty.last_attempt) == (4, T0)
    gap = BACKOFF.delay(4, aj["metadata"]["uid"])
    # A new operator process reading the same ArchiveJob plans the same next try.
    assert plan(Duty.of(aj), T0 + timedelta(seconds=gap - 0.5), BACKOFF).action == "wait"
    assert plan(Duty.of(aj), T0 + timedelta(seconds=gap), BACKOFF).action == "attempt"


def simulate(aj: dict[str, Any], answers: Any, start: datetime) -> tuple[dict, list[datetime]]:
    """Drive the plan as the reconciler does, with a clock that jumps to each wake-up."""
    now, tries = start, []
    for _ in range(1000):
        duty = Duty.of(aj)
        if duty is None:
            return aj, tries
        step = plan(duty, now, BACKOFF)
        if step.action == "wait":
            now += timedelta(seconds=step.after_sec)
            continue
        if step.action == "expire":
            outcome = expired(aj, duty, now)
        else:
            tries.append(now)
            outcome = attempted(aj, duty, next(answers), now, BACKOFF)
        aj = apply(aj, outcome.patch)
        if outcome.closed:
            return aj, tries
    raise AssertionError("no end")


def test_moodle_never_back_gives_up_at_the_token_lifetime() -> None:
    aj = owing(timeout=3600)
    deadline = T0 + timedelta(seconds=3600)
    final, tries = simulate(aj, iter(lambda: UNREACHABLE, None), T0 + timedelta(seconds=60))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(tries)]
    assert all(g <= 360 for g in gaps) and gaps[:3] == sorted(gaps[:3])
    assert 12 <= len(tries) <= 25, len(tries)
    assert deadline - timedelta(seconds=16) <= tries[-1] < deadline  # the last chance
    cond = find(final["status"]["conditions"], "MoodleNotified")
    assert (cond["status"], cond["reason"]) == ("False", "TokenExpired")
    assert "pendingMoodleStatus" not in final["status"]
    assert final["status"]["moodleDeliveryAttempts"] == len(tries)


def test_moodle_back_after_a_while_gets_the_status() -> None:
    answers = iter([UNREACHABLE, UNREACHABLE, "ServerError", "OK"])
    final, tries = simulate(owing("TIMEOUT"), answers, T0)
    assert len(tries) == 4
    status = final["status"]
    cond = find(status["conditions"], "MoodleNotified")
    assert (cond["status"], cond["reason"]) == ("True", "Delivered")
    assert status["moodleStatus"] == "TIMEOUT" and "pendingMoodleStatus" not in status
    assert status["phase"] == "Failed"


def test_a_retry_says_why_and_when_in_one_line() -> None:
    aj = owing()
    outcome = attempted(aj, Duty.of(aj), UNREACHABLE, T0, BACKOFF)
    assert not outcome.closed
    cond = find(outcome.patch["conditions"], "MoodleNotified")
    assert (cond["status"], cond["reason"]) == ("False", "Redelivering")
    assert "\n" not in cond["message"] and "Moodle could not be reached" in cond["message"]
    assert "next try in" in cond["message"]
    assert outcome.patch["moodleDeliveryAttempts"] == 1
    assert outcome.patch["lastMoodleDeliveryTime"] == timestamp(T0)
    assert [e.reason for e in outcome.events] == ["MoodleNotifyFailed"]
    assert "pendingMoodleStatus" not in outcome.patch  # still owed


@pytest.mark.parametrize(
    ("answer", "cond_status", "reason"),
    [
        ("invalidtoken", "True", "AlreadyFinal"),  # Moodle deleted the token: the job is over
        ("E_JOB_ALREADY_COMPLETED", "True", "AlreadyFinal"),
        ("E_ACCESS_DENIED", "False", "Refused"),
        (NO_TOKEN, "False", "Refused"),
    ],
)
def test_answers_that_end_the_duty(answer: str, cond_status: str, reason: str) -> None:
    aj = owing()
    outcome = attempted(aj, Duty.of(aj), answer, T0, BACKOFF)
    assert outcome.closed and outcome.patch["pendingMoodleStatus"] is None
    cond = find(outcome.patch["conditions"], "MoodleNotified")
    assert (cond["status"], cond["reason"]) == (cond_status, reason)
    assert "moodleStatus" not in outcome.patch


@pytest.mark.parametrize("answer", ["E_UPDATE_FAILED", "accessexception", "ServerError"])
def test_answers_worth_another_try(answer: str) -> None:
    aj = owing()
    assert not attempted(aj, Duty.of(aj), answer, T0, BACKOFF).closed


def test_a_redelivered_processing_call_makes_the_job_succeed() -> None:
    aj = owing("FINISHED", pendingArtifact=ARTIFACT.model_dump(by_alias=True))
    duty = Duty.of(aj)
    assert duty is not None and duty.status is JobStatus.FINISHED and duty.artifact == ARTIFACT
    outcome = attempted(aj, duty, "OK", T0, BACKOFF)
    status = apply(aj, outcome.patch)["status"]
    assert status["phase"] == "Succeeded" and "pendingArtifact" not in status
    assert find(status["conditions"], "Succeeded")["status"] == "True"
    assert find(status["conditions"], "MoodleNotified")["reason"] == "Delivered"


def test_a_processing_duty_without_its_artifact_becomes_failed() -> None:
    duty = Duty.of(owing("FINISHED"))
    assert duty is not None and duty.status is JobStatus.FAILED


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ({"phase": "Failed", "runnerPhase": "Failed", "moodleStatus": "FAILED"}, "NotNeeded"),
        ({"phase": "Succeeded", "runnerPhase": "Succeeded"}, "NotNeeded"),
        ({"phase": "Failed", "moodleStatus": "FAILED"}, "NotNeeded"),
        ({"phase": "Failed"}, "NoToken"),  # the token Secret never appeared
    ],
)
def test_final_archivejobs_that_owe_nothing_say_so(status: dict[str, Any], reason: str) -> None:
    aj = archivejob(status={**status, "conditions": []})
    assert Duty.of(aj) is None
    outcome = settled(aj, T0)
    assert outcome is not None and outcome.closed
    assert find(outcome.patch["conditions"], "MoodleNotified")["reason"] == reason
    assert settled(apply(aj, outcome.patch), T0) is None  # written once


@pytest.mark.parametrize("answer", ["invalidtoken", "E_NO_ARTIFACT_UPLOAD_EXPECTED",
                                    "E_NO_UPLOAD_EXPECTED"])  # fmt: skip
def test_a_processing_call_answered_already_final_means_moodle_has_the_archive(
    answer: str,
) -> None:
    """Moodle deletes the token when it stores an archive: a redelivered processing call
    that finds the job over follows one whose answer was lost on the way back."""
    uploaded = "the archive was uploaded, but asking Moodle to process it failed"
    aj = owing("FINISHED", pendingArtifact=ARTIFACT.model_dump(by_alias=True), message=uploaded)
    outcome = attempted(aj, Duty.of(aj), answer, T0, BACKOFF)
    assert outcome.closed
    status = apply(aj, outcome.patch)["status"]
    assert status["phase"] == "Succeeded" and status["moodleStatus"] == "FINISHED"
    assert "pendingArtifact" not in status and "pendingMoodleStatus" not in status
    assert find(status["conditions"], "Succeeded")["status"] == "True"
    assert find(status["conditions"], "Uploaded")["status"] == "True"
    cond = find(status["conditions"], "MoodleNotified")
    assert (cond["status"], cond["reason"]) == ("True", "AlreadyFinal")
    assert "already processed the archive" in status["message"] and answer in status["message"]
    assert "\n" not in status["message"] and len(status["message"]) <= 300


def test_a_status_answered_already_final_leaves_the_phase_as_it_was() -> None:
    aj = owing("FAILED")
    status = apply(aj, attempted(aj, Duty.of(aj), "invalidtoken", T0, BACKOFF).patch)["status"]
    assert status["phase"] == "Failed" and "moodleStatus" not in status
