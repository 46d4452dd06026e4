"""The status state machine: every path from Queued to a final state, as pure decisions."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from moodle_archive_job.moodle_api import JobStatus
from moodle_archive_operator.archivejob import ArchiveJob, Phase
from moodle_archive_operator.controller.decide import Decision, admitted_patch, decide
from moodle_archive_operator.controller.observe import observe
from moodle_archive_operator.controller.settings import OperatorSettings
from tests.operator.objects import T0, archivejob, job, pod

SETTINGS = OperatorSettings(
    _env_file=None,
    pending_timeout_sec=60,
    token_secret_timeout_sec=30,  # type: ignore[call-arg]
)
NOW = T0 + timedelta(seconds=10)


def apply(aj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    updated = copy.deepcopy(aj)
    updated.setdefault("status", {}).update(decision.patch)
    return updated


def admitted(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    aj = archivejob(**spec)
    aj["status"] = {**admitted_patch(aj, aj["metadata"]["name"], T0), **(status or {})}
    return aj


def cond(aj_or_patch: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = aj_or_patch.get("conditions") or aj_or_patch["status"]["conditions"]
    return next(c for c in conditions if c["type"] == type_)


def test_a_new_archivejob_waits_in_the_queue() -> None:
    aj = archivejob()
    d = decide(aj, None, True, NOW, SETTINGS)
    assert d.final is None
    assert d.patch["phase"] == "Queued"
    assert d.patch["queuedAt"] == "2026-01-01T12:00:10Z"
    assert cond(d.patch, "Admitted")["status"] == "False"
    assert cond(d.patch, "Succeeded") | {"lastTransitionTime": "x"} == {
        "type": "Succeeded", "status": "Unknown", "reason": "Queued",
        "message": "waiting for a free slot", "lastTransitionTime": "x", "observedGeneration": 1,
    }  # fmt: skip
    assert [(e.type, e.reason) for e in d.events] == [("Normal", "Queued")]
    ArchiveJob.model_validate(apply(aj, d))  # the CRD's shape


def test_deciding_again_on_the_result_changes_nothing() -> None:
    aj = archivejob()
    first = decide(aj, None, True, NOW, SETTINGS)
    second = decide(apply(aj, first), None, True, NOW + timedelta(seconds=5), SETTINGS)
    assert second.patch == {} and second.events == []


def test_without_its_token_secret_it_waits_then_fails() -> None:
    aj = archivejob()
    d = decide(aj, None, False, NOW, SETTINGS)
    assert d.patch["phase"] == "Pending" and d.final is None
    assert cond(d.patch, "Succeeded")["reason"] == "WaitingForTokenSecret"
    assert d.requeue_after is not None and d.requeue_after <= 1.0
    late = decide(apply(aj, d), None, False, T0 + timedelta(seconds=31), SETTINGS)
    assert late.final is not None and late.final.reason == "TokenSecretMissing"
    assert late.final.notify is None  # nobody has a token to tell Moodle with


def test_admitted_job_without_pods_then_quota_then_pending_timeout() -> None:
    aj = admitted()
    d = decide(aj, observe(job(aj), [], []), True, NOW, SETTINGS)
    assert apply(aj, d)["status"]["phase"] == "Pending"
    assert cond(d.patch, "Succeeded")["reason"] == "PodCreating"
    quota = (
        'pods "x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0'
    )
    obs = observe(job(aj), [], [quota])
    d = decide(aj, obs, True, NOW, SETTINGS)
    assert cond(d.patch, "Succeeded")["reason"] == "QuotaExceeded"
    assert d.events[0].type == "Warning" and d.events[0].reason == "QuotaExceeded"
    assert d.requeue_after == 50
    late = decide(aj, obs, True, T0 + timedelta(seconds=61), SETTINGS)
    assert late.final is not None
    assert (late.final.phase, late.final.reason) == (Phase.FAILED, "QuotaExceeded")
    assert late.final.stop_job and late.final.notify is JobStatus.FAILED
    assert "exceeded quota" in late.final.message


def test_unschedulable_and_image_pull_problems_surface_in_conditions() -> None:
    aj = admitted()
    unschedulable = pod(
        "Pending", started=None, node=None,
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available"}],
    )  # fmt: skip
    d = decide(aj, observe(job(aj), [unschedulable], []), True, NOW, SETTINGS)
    assert cond(d.patch, "PodScheduled")["reason"] == "Unschedulable"
    assert cond(d.patch, "Succeeded")["reason"] == "Unschedulable"
    assert d.patch["message"] == "0/3 nodes are available"
    pulling = pod("Pending", started=None, waiting="ImagePullBackOff")
    d = decide(aj, observe(job(aj), [pulling], []), True, NOW, SETTINGS)
    assert cond(d.patch, "PodScheduled")["status"] == "True"
    assert cond(d.patch, "PodRunning")["reason"] == "ImagePullBackOff"
    late = decide(aj, observe(job(aj), [pulling], []), True, T0 + timedelta(minutes=2), SETTINGS)
    assert late.final is not None and late.final.reason == "ImagePullBackOff"


def test_running_follows_the_runners_own_phase() -> None:
    aj = admitted()
    obs = observe(job(aj), [pod("Running")], [])
    d = decide(aj, obs, True, NOW, SETTINGS)
    assert d.patch["phase"] == "Running"
    assert d.patch["startTime"] == "2026-01-01T12:00:05Z"
    assert cond(d.patch, "PodRunning")["status"] == "True"
    assert d.events[0].reason == "Running"
    running = apply(aj, d)
    running["status"].update(runnerPhase="Finalizing", message="uploading the archive")
    d2 = decide(running, obs, True, NOW, SETTINGS)
    assert d2.patch["phase"] == "Finalizing" and "message" not in d2.patch
    assert d2.events[0].reason == "Finalizing"


def test_the_runners_success_report_ends_the_job_at_once() -> None:
    aj = admitted({"runnerPhase": "Succeeded", "message": "Moodle accepted a.zip (10 bytes)",
                   "artifact": {"name": "a.zip", "size": 10, "sha256": "a" * 64}})  # fmt: skip
    d = decide(aj, observe(job(aj), [pod("Running")], []), True, NOW, SETTINGS)
    assert d.final is not None and d.final.phase is Phase.SUCCEEDED
    assert d.final.notify is None and not d.final.stop_job
    assert cond(d.patch, "Uploaded")["status"] == "True"
    assert cond(d.patch, "Succeeded")["status"] == "True"
    assert d.patch["progress"] == 100 and d.patch["completionTime"]
    ArchiveJob.model_validate(apply(aj, d))


def test_a_completed_job_succeeds_even_without_a_report() -> None:
    aj = admitted({"message": "waiting for the job pod to start"})  # the operator's, not the pod's
    d = decide(aj, observe(job(aj, "Complete", "CompletionsReached"), [], []), True, NOW, SETTINGS)
    assert d.final is not None and d.final.phase is Phase.SUCCEEDED and d.final.notify is None
    assert d.final.message == "the job pod completed"


def test_deadline_exceeded_times_out_and_the_operator_tells_moodle() -> None:
    aj = admitted({"runnerPhase": "Running", "moodleStatus": "RUNNING"})
    obs = observe(job(aj, "Failed", "DeadlineExceeded"), [pod("Failed", exit_code=137)], [])
    d = decide(aj, obs, True, NOW, SETTINGS)
    assert d.final is not None
    assert (d.final.phase, d.final.reason) == (Phase.TIMED_OUT, "DeadlineExceeded")
    assert d.final.notify is JobStatus.TIMEOUT
    assert d.events[0].type == "Warning"


def test_runner_failures_by_exit_code() -> None:
    aj = admitted()
    cases = {1: (Phase.FAILED, "RunnerFailed"), 2: (Phase.FAILED, "InvalidInput"),
             3: (Phase.TIMED_OUT, "RunnerTimedOut")}  # fmt: skip
    for code, expected in cases.items():
        obs = observe(job(aj, "Failed", "PodFailurePolicy"), [pod("Failed", exit_code=code)], [])
        final = decide(aj, obs, True, NOW, SETTINGS).final
        assert final is not None and (final.phase, final.reason) == expected
        assert final.notify is (JobStatus.TIMEOUT if code == 3 else JobStatus.FAILED)


def test_when_the_pod_told_moodle_itself_the_operator_does_not_again() -> None:
    aj = admitted({"runnerPhase": "Failed", "moodleStatus": "FAILED", "message": "boom"})
    obs = observe(job(aj, "Failed", "PodFailurePolicy"), [pod("Failed", exit_code=1)], [])
    final = decide(aj, obs, True, NOW, SETTINGS).final
    assert final is not None and final.reason == "RunnerFailed"
    assert final.message == "boom" and final.notify is None


def test_a_pod_that_failed_for_good_is_not_said_to_be_retried() -> None:
    # The runner reported its end and exited 1; the Job's Failed condition (pod failure
    # policy) comes a moment later. Meanwhile no "starting another", and the final message
    # is the runner's own line.
    line = "attempt 7: stylesheet http://m/theme/all answered HTTP 503"
    running = admitted({"phase": "Running", "runnerPhase": "Failed", "message": line})
    failed = pod("Failed", exit_code=1)
    d = decide(running, observe(job(running), [failed], []), True, NOW, SETTINGS)
    assert d.final is None
    assert d.patch.get("phase", "Running") == "Running"
    assert d.patch.get("message", line) == line
    assert cond(d.patch, "Succeeded")["reason"] == "JobFailing"
    later = apply(running, d)
    obs = observe(job(later, "Failed", "PodFailurePolicy"), [failed], [])
    final = decide(later, obs, True, NOW, SETTINGS).final
    assert final is not None and final.reason == "RunnerFailed" and final.message == line


def test_oom_and_eviction() -> None:
    aj = admitted()
    oom = pod("Failed", exit_code=137, term_reason="OOMKilled")
    final = decide(aj, observe(job(aj, "Failed", "BackoffLimitExceeded"), [oom, oom], []), True,
                   NOW, SETTINGS).final  # fmt: skip
    assert final is not None and final.reason == "OOMKilled" and "2 attempts" in final.message
    evicted = pod(
        "Failed", exit_code=137, name="archive-x-1",
        conditions=[{"type": "DisruptionTarget", "status": "True",
                     "reason": "EvictionByEvictionAPI", "message": "Eviction API"}],
    )  # fmt: skip
    replacement = pod("Pending", started=None, name="archive-x-2",
                      created=T0 + timedelta(seconds=1))  # fmt: skip
    running = apply(aj, decide(aj, observe(job(aj), [pod("Running")], []), True, NOW, SETTINGS))
    d = decide(running, observe(job(aj), [evicted, replacement], []), True, NOW, SETTINGS)
    assert d.final is None and d.patch["phase"] == "Pending"
    assert cond(d.patch, "Succeeded")["reason"] == "Retrying"
    assert "Evicted" in d.patch["message"]
    assert d.requeue_after is None  # it ran once: no pending timeout for the replacement


def test_cancel_stops_a_running_job_and_a_queued_one() -> None:
    aj = admitted(cancelRequested=True)
    d = decide(aj, observe(job(aj), [pod("Running")], []), True, NOW, SETTINGS)
    assert d.final is not None and d.final.phase is Phase.CANCELLED
    assert d.final.stop_job and d.final.notify is JobStatus.FAILED
    queued = archivejob(cancelRequested=True)
    d = decide(queued, None, True, NOW, SETTINGS)
    assert d.final is not None and d.final.phase is Phase.CANCELLED and not d.final.stop_job


def test_an_admitted_archivejob_whose_job_vanished_fails() -> None:
    d = decide(admitted(), None, True, NOW, SETTINGS)
    assert d.final is not None and d.final.reason == "JobLost"


def test_transition_times_move_only_when_a_condition_changes_status() -> None:
    aj = admitted()
    pending = apply(aj, decide(aj, observe(job(aj), [], []), True, NOW, SETTINGS))
    later = NOW + timedelta(seconds=20)
    quota = observe(job(aj), [], ["exceeded quota: q"])
    d = decide(pending, quota, True, later, SETTINGS)
    # Succeeded stays Unknown (only its reason changes): its transition time stays.
    assert (
        cond(d.patch, "Succeeded")["lastTransitionTime"]
        == cond(pending, "Succeeded")["lastTransitionTime"]
    )
