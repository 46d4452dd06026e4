"""Pod-level reasons KWOK does not play by itself (an image that cannot be pulled, an
eviction through the Eviction API), and housekeeping: history limits and the orphan sweep."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.operator.conftest import KWOK, RUN_FOREVER, Harness
from tests.support.cluster_fixtures import eventually

pytestmark = pytest.mark.cluster


def succeeded_reason(h: Harness, name: str) -> str | None:
    conditions = (h.archivejob(name) or {}).get("status", {}).get("conditions", [])
    return next((c["reason"] for c in conditions if c["type"] == "Succeeded"), None)


def test_image_pull_backoff_surfaces_and_the_pending_timeout_ends_it(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_PENDING_TIMEOUT_SEC="8",
        MAO_JOB_POD_ANNOTATIONS={f"{KWOK}/pending-duration": "1h"},
    )
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    pod = eventually(lambda: next((p for p in h.pods(name) if p.status.pod_ip), None),
                     what="the pod, scheduled and pending")  # fmt: skip
    # What a kubelet reports when the image cannot be pulled.
    h.core.patch_namespaced_pod_status(pod.metadata.name, h.namespace, {"status": {
        "containerStatuses": [{
            "name": "runner", "image": "moodle-archive-job:test", "imageID": "",
            "ready": False, "restartCount": 0, "started": False,
            "state": {"waiting": {"reason": "ImagePullBackOff",
                                  "message": 'Back-off pulling image "moodle-archive-job:test"'}},
        }]}})  # fmt: skip
    eventually(lambda: succeeded_reason(h, name) == "ImagePullBackOff",
               what="ImagePullBackOff in the conditions")  # fmt: skip
    running = next(
        c for c in h.archivejob(name)["status"]["conditions"] if c["type"] == "PodRunning"
    )
    assert (running["status"], running["reason"]) == ("False", "ImagePullBackOff")
    final = h.wait_phase(name)
    assert (final["status"]["phase"], succeeded_reason(h, name)) == ("Failed", "ImagePullBackOff")
    # Moodle is told right after the final state is written (MoodleNotified says when).
    eventually(lambda: h.moodle.job(aj["spec"]["jobId"]).status_name == "FAILED",
               what="Moodle told FAILED")  # fmt: skip
    assert any(e.reason == "ImagePullBackOff" and e.type == "Warning" for e in h.events(name))
    h.wait_gone("Job", name)


def test_an_evicted_pod_is_replaced_not_counted_as_a_failure(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_BACKOFF_LIMIT="0")
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    first = h.wait_running_pod(name)["metadata"]["name"]
    h.wait_phase(name, ("Running",))
    h.core.create_namespaced_pod_eviction(first, h.namespace, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=first, namespace=h.namespace)))  # fmt: skip
    # backoffLimit 0, yet the Job goes on: podFailurePolicy ignores DisruptionTarget.
    second = eventually(
        lambda: next((p.metadata.name for p in h.pods(name)
                      if p.metadata.name != first and p.status.phase == "Running"), None),
        what="a replacement pod running",
    )  # fmt: skip
    assert second != first
    h.wait_phase(name, ("Running",))
    retrying = [e for e in h.events(name) if e.reason == "Retrying"]
    assert retrying and "Evicted" in retrying[0].message, [e.reason for e in h.events(name)]
    job = h.job(name)
    assert job is not None and not any(c.type == "Failed" for c in job.status.conditions or [])


def test_history_limits_and_the_orphan_sweep(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_HISTORY_MAX_COUNT="2",
        MAO_ORPHAN_GRACE_SEC="0",
        MAO_JOB_POD_ANNOTATIONS={f"{KWOK}/run-duration": "200ms"},
        MAO_MAX_PARALLEL_JOBS="1",
    )
    names = [h.submit()[0]["metadata"]["name"] for _ in range(4)]
    h.wait_phase(names[-1])

    def kept() -> list[tuple[str, str | None, str | None]]:
        return [(a["metadata"]["name"], a.get("status", {}).get("phase"),
                 a.get("status", {}).get("completionTime")) for a in h.archivejobs()]  # fmt: skip

    try:
        eventually(lambda: [k[0] for k in kept()] == sorted(names[-2:]),
                   what="only the newest two finished ArchiveJobs kept")  # fmt: skip
    except BaseException:
        print("created:", names, "kept:", kept(), h.operator_logs()[-5000:], sep="\n")
        raise
    labels = {
        "app.kubernetes.io/managed-by": "moodle-archiver-operator",
        "app.kubernetes.io/component": "archive-runner",
        "moodlearchiver.io/archivejob-uid": "00000000-0000-0000-0000-000000000000",
    }
    h.core.create_namespaced_config_map(h.namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="orphan", labels=labels), data={"a": "b"}))  # fmt: skip
    h.core.create_namespaced_secret(h.namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="orphan-token",
                                     labels={"app.kubernetes.io/component": "token"}),
        string_data={"token": "f" * 32}))  # fmt: skip

    def swept() -> bool:
        names_cm = {c.metadata.name for c in h.core.list_namespaced_config_map(h.namespace).items}
        names_s = {s.metadata.name for s in h.core.list_namespaced_secret(h.namespace).items}
        return "orphan" not in names_cm and "orphan-token" not in names_s

    eventually(swept, what="the orphaned ConfigMap and token Secret swept")
    assert "moodle_archiver_operator_archivejobs_finished_total" in h.operators[0].metrics()
