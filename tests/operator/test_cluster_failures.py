"""Every way a job can end badly, on the real control plane, checked on both sides: the
ArchiveJob's phase and conditions, and the fake Moodle's job status. The token Secret
is gone after every final state."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.operator.conftest import KWOK, RUN_FOREVER, Harness
from tests.operator.leaks import assert_no_token_leak
from tests.operator.test_cluster_flow import FAST_RUNNER
from tests.support.cluster_fixtures import eventually
from tests.support.kubeapi import read_or_none

pytestmark = pytest.mark.cluster


def moodle_status(h: Harness, aj: dict[str, Any]) -> str | None:
    return h.moodle.job(aj["spec"]["jobId"]).status_name


def assert_final(
    h: Harness, name: str, phase: str, reason: str, moodle: str | None, timeout: float = 60
) -> dict[str, Any]:
    aj = h.wait_phase(name, timeout=timeout)
    status = aj["status"]
    assert (status["phase"], h.condition(aj, "Succeeded")["reason"]) == (phase, reason), status
    assert h.condition(aj, "Succeeded")["status"] == "False"
    assert status.get("completionTime")
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    if moodle is not None:
        assert moodle_status(h, aj) == moodle
        assert not h.moodle.job(aj["spec"]["jobId"]).token_valid
        # Told by the operator (the pod could not), which the ArchiveJob shows.
        aj = h.archivejob(name)
        assert notified(h, aj) == ("True", "Delivered")
        assert "pendingMoodleStatus" not in aj["status"]
    assert any(e.reason == reason for e in h.events(name)), [e.reason for e in h.events(name)]
    return aj


def notified(h: Harness, aj: dict[str, Any]) -> tuple[str, str]:
    cond = h.condition(aj, "MoodleNotified")
    return cond["status"], cond["reason"]


def moodle_failed_count(h: Harness, aj: dict[str, Any]) -> int:
    job = h.moodle.job(aj["spec"]["jobId"])
    return sum(1 for u in job.status_updates if u.source == "worker" and u.status == "FAILED")


def test_pod_fails_with_a_runner_exit_code(harness: Harness) -> None:
    h = harness
    fail = {f"{KWOK}/outcome": "fail", f"{KWOK}/exit-code": "1", f"{KWOK}/run-duration": "500ms"}
    h.operator(MAO_JOB_POD_ANNOTATIONS=fail)
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    final = assert_final(h, name, "Failed", "RunnerFailed", "FAILED")
    # The pod never spoke to Moodle: the operator did, with the token, before deleting it.
    assert final["status"]["moodleStatus"] == "FAILED"
    assert any(e.reason == "MoodleNotified" for e in h.events(name))
    job = h.job(name)
    assert job is not None and len(h.pods(name)) == 1  # exit code 1: never retried
    assert_no_token_leak(h)


def test_oom_killed_pods_are_retried_then_fail(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_BACKOFF_LIMIT="1",
        MAO_JOB_POD_ANNOTATIONS={
            f"{KWOK}/outcome": "fail", f"{KWOK}/exit-code": "137",
            f"{KWOK}/reason": "OOMKilled", f"{KWOK}/run-duration": "300ms"},
    )  # fmt: skip
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    final = assert_final(h, name, "Failed", "OOMKilled", "FAILED", timeout=90)
    assert len(h.pods(name)) == 2  # backoffLimit 1: one retry
    assert "2 attempts" in final["status"]["message"]


def test_deadline_exceeded_times_out_and_the_operator_tells_moodle_timeout(
    harness: Harness,
) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)
    aj, _ = h.submit(timeout=4)
    name = aj["metadata"]["name"]
    h.wait_phase(name, ("Running",))
    final = assert_final(h, name, "TimedOut", "DeadlineExceeded", "TIMEOUT")
    assert final["status"]["moodleStatus"] == "TIMEOUT"
    assert h.job(name).spec.active_deadline_seconds == 4
    assert_no_token_leak(h)


def test_pending_timeout_fails_an_unschedulable_pod(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_PENDING_TIMEOUT_SEC="4",
        MAO_JOB_NODE_SELECTOR={"no-such-node": "true"},
    )
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    pending = h.wait_phase(name, ("Pending",))
    eventually(
        lambda: (h.archivejob(name) or {}).get("status", {}).get("conditions") and any(
            c["type"] == "PodScheduled" and c["reason"] == "Unschedulable"
            for c in h.archivejob(name)["status"]["conditions"]),
        what="PodScheduled=False/Unschedulable",
    )  # fmt: skip
    assert pending["status"]["phase"] == "Pending"
    final = assert_final(h, name, "Failed", "Unschedulable", "FAILED")
    assert "did not start within 4 s" in final["status"]["message"]
    h.wait_gone("Job", name)  # stopped, so it holds no slot


def test_quota_refusals_surface_and_time_out(harness: Harness) -> None:
    h = harness
    h.core.create_namespaced_resource_quota(h.namespace, client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-pods"), spec=client.V1ResourceQuotaSpec(
            hard={"pods": "0"})))  # fmt: skip
    h.operator(MAO_PENDING_TIMEOUT_SEC="6")
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    eventually(
        lambda: any(
            c["type"] == "Succeeded" and c["reason"] == "QuotaExceeded"
            for c in (h.archivejob(name) or {}).get("status", {}).get("conditions", [])),
        what="the quota refusal in the ArchiveJob's conditions",
    )  # fmt: skip
    final = assert_final(h, name, "Failed", "QuotaExceeded", "FAILED")
    assert "exceeded quota" in final["status"]["message"]


def test_cancel_stops_the_job_and_keeps_the_record(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    h.wait_phase(name, ("Running",))
    h.patch_spec(name, {"cancelRequested": True})
    final = h.wait_phase(name)
    assert final["status"]["phase"] == "Cancelled"
    assert h.condition(final, "Succeeded")["reason"] == "Cancelled"
    h.wait_gone("Job", name)
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    assert moodle_status(h, aj) == "FAILED"
    kept = h.archivejob(name)
    assert kept is not None  # kept for audit
    assert notified(h, kept) == ("True", "Delivered")


def test_cancel_of_a_queued_archivejob(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_MAX_PARALLEL_JOBS="1"
    )
    h.submit()  # holds the only slot
    second, _ = h.submit()
    h.wait_phase(second["metadata"]["name"], ("Queued",))
    h.patch_spec(second["metadata"]["name"], {"cancelRequested": True})
    assert_final(h, second["metadata"]["name"], "Cancelled", "Cancelled", "FAILED")
    assert h.job(second["metadata"]["name"]) is None  # never admitted


def test_deleting_a_running_archivejob_stops_its_pod(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    h.wait_phase(name, ("Running",))
    assert h.pods(name)
    h.delete(name)
    h.wait_gone("Job", name)
    eventually(lambda: not h.pods(name), what="the pod to be collected")
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    for read in (h.core.read_namespaced_service_account, h.core.read_namespaced_config_map):
        eventually(lambda read=read: _gone(lambda: read(name, h.namespace)), what="children")
    # Without a runner in the pod, the operator tells Moodle: the token Secret is not owned by
    # the ArchiveJob, so the garbage collector does not take it first.
    assert moodle_status(h, aj) == "FAILED" and moodle_failed_count(h, aj) == 1


def test_deleting_an_archivejob_whose_runner_works_tells_moodle_failed(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_JOB_ENV=FAST_RUNNER)
    h.moodle.faults.set_latency("report", 1.0)
    try:
        aj, _ = h.submit(h.fake_job(attempts=6))
        name = aj["metadata"]["name"]
        player = h.play(name)
        eventually(
            lambda: (h.archivejob(name) or {}).get("status", {}).get("attemptsDone", 0) >= 1,
            timeout=120, what="the runner to be at work",
        )  # fmt: skip
        h.delete(name)
        # The kubelet (the player) stops the runner: it finds its ArchiveJob gone and, as the
        # last holder of the token, tells Moodle FAILED.
        assert player.wait(timeout=60) == 143, player.logs()[-3000:]
    finally:
        h.moodle.faults.clear()
    assert player.terminated_by_deletion
    assert moodle_status(h, aj) == "FAILED"
    # The runner and the operator may both try: Moodle takes the first and drops the token.
    assert moodle_failed_count(h, aj) == 1
    assert not h.moodle.job(aj["spec"]["jobId"]).token_valid
    h.wait_gone("Job", name)
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    assert_no_token_leak(h)


def _gone(read: Any) -> bool:
    return read_or_none(read) is None


def test_a_missing_token_secret_fails_the_archivejob(harness: Harness) -> None:
    h = harness
    h.operator(MAO_TOKEN_SECRET_TIMEOUT_SEC="3")
    aj, _ = h.submit(with_secret=False)
    name = aj["metadata"]["name"]
    final = h.wait_phase(name)
    assert (final["status"]["phase"], h.condition(final, "Succeeded")["reason"]) == (
        "Failed", "TokenSecretMissing")  # fmt: skip
    assert h.job(name) is None
