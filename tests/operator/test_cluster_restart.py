"""The operator killed mid-task: nothing duplicated, nothing lost, the right final state."""

from __future__ import annotations

import pytest

from tests.operator.conftest import RUN_FOREVER, Harness
from tests.operator.test_cluster_flow import FAST_RUNNER

pytestmark = pytest.mark.cluster


def test_operator_killed_while_the_runner_works_resumes_to_succeeded(harness: Harness) -> None:
    h = harness
    env = {
        "MAO_JOB_POD_ANNOTATIONS": RUN_FOREVER,
        "MAO_JOB_ENV": FAST_RUNNER,
        "MAO_MAX_PARALLEL_JOBS": "1",
    }
    first = h.operator(**env)
    h.moodle.faults.set_latency("report", 0.5)
    try:
        aj, _ = h.submit(h.fake_job(attempts=4))
        name = aj["metadata"]["name"]
        player = h.play(name)
        behind, _ = h.submit()  # queued behind it; admitted only after the restart
        h.wait_phase(behind["metadata"]["name"], ("Queued",))
        job_uid = h.job(name).metadata.uid
        first.kill()  # SIGKILL mid-task
        second = h.operator(**env)
        assert second.alive()
        assert player.wait(timeout=240) == 0, player.logs()[-3000:]
        final = h.wait_phase(name, timeout=60)
    finally:
        h.moodle.faults.clear()
    assert final["status"]["phase"] == "Succeeded"
    assert final["status"]["runnerPhase"] == "Succeeded"
    assert h.job(name).metadata.uid == job_uid  # the same Job, re-attached, not a second one
    assert len(h.pods(name)) == 1
    assert h.moodle.job(aj["spec"]["jobId"]).status_name == "FINISHED"
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    # The slot it freed goes to the ArchiveJob that waited.
    h.wait_phase(behind["metadata"]["name"], ("Running",))
    assert len(h.batch.list_namespaced_job(h.namespace).items) == 2


def test_operator_down_while_the_job_finishes(harness: Harness) -> None:
    h = harness
    first = h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    h.wait_phase(name, ("Running",))
    pod = h.wait_running_pod(name)
    first.stop()
    # The pod fails with the runner's "invalid input" code while nobody watches.
    h.core.patch_namespaced_pod(pod["metadata"]["name"], h.namespace, {"metadata": {
        "annotations": {"kwok.moodlearchiver.io/outcome": "fail",
                        "kwok.moodlearchiver.io/exit-code": "2",
                        "kwok.moodlearchiver.io/run-duration": "0s"}}})  # fmt: skip
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)
    final = h.wait_phase(name)
    assert (final["status"]["phase"], h.condition(final, "Succeeded")["reason"]) == (
        "Failed", "InvalidInput")  # fmt: skip
    # Moodle is told right after the final state is written; the Secret goes after that.
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    assert h.moodle.job(aj["spec"]["jobId"]).status_name == "FAILED"
    assert h.condition(h.archivejob(name), "MoodleNotified")["reason"] == "Delivered"
    assert len(h.batch.list_namespaced_job(h.namespace).items) == 1
