"""The whole flow on the real control plane: the gateway takes the plugin's task, the
operator admits it, KWOK plays the pod, the runner runs as a local process with its
pod's files and its ServiceAccount's real token, and the fake Moodle ends with the archive."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from moodle_archive_operator.archivejob import GROUP, PLURAL, VERSION
from tests.gateway.server import GatewayProcess
from tests.operator.conftest import RUN_FOREVER, Harness
from tests.operator.leaks import assert_no_token_leak
from tests.support.cluster_fixtures import client_for_token, create_service_account_token

pytestmark = pytest.mark.cluster

FAST_RUNNER = {
    "MAO_STATUS_INTERVAL_SEC": "0.2",
    "QUIZ_ARCHIVER_STATUS_REPORTING_INTERVAL_SEC": "0",
    "QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY": "1",
    "QUIZ_ARCHIVER_PDFA_CONVERSION": "false",
}


class StatusRecorder:
    """Samples an ArchiveJob's status in the background."""

    def __init__(self, h: Harness, name: str) -> None:
        self.h, self.name = h, name
        self.samples: list[tuple[str | None, int | None, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status = (self.h.archivejob(self.name) or {}).get("status", {})
            sample = (status.get("phase"), status.get("progress"), status.get("runnerPhase"))
            if not self.samples or self.samples[-1] != sample:
                self.samples.append(sample)
            time.sleep(0.05)

    def stop(self) -> list[tuple[str | None, int | None, str | None]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


def test_a_task_posted_to_the_gateway_ends_succeeded_with_the_archive_in_moodle(
    harness: Harness,
) -> None:
    h = harness
    moodle = h.moodle
    moodle.faults.set_latency("report", 0.4)
    try:
        h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER,
                   MAO_JOB_ENV=FAST_RUNNER)  # fmt: skip
        log = h.tmp / "gateway.log"
        with GatewayProcess(h.cluster.kubeconfig, h.namespace, moodle.base_url, log) as gateway:
            moodle_job = h.fake_job(attempts=5)
            h.tokens.append(moodle_job.token)
            result = moodle.submit_job(moodle_job, gateway.url)
            assert result.ok, result.message
            job_id = result.data["jobid"]
            name = f"archive-{job_id}"
            recorder = StatusRecorder(h, name)
            player = h.play(name)
            assert player.wait(timeout=240) == 0, player.logs()[-3000:]
            aj = h.wait_phase(name, timeout=60)
            samples = recorder.stop()
            gateway_logs = gateway.logs()
    finally:
        moodle.faults.clear()

    status = aj["status"]
    assert status["phase"] == "Succeeded", status
    assert h.condition(aj, "Succeeded")["status"] == "True"
    assert h.condition(aj, "Uploaded")["status"] == "True"
    assert h.condition(aj, "Admitted")["status"] == "True"
    assert status["runnerPhase"] == "Succeeded" and status["progress"] == 100
    assert status["attemptsDone"] == status["attemptsTotal"] == 5
    assert status["startTime"] <= status["completionTime"]
    assert status["jobName"] == name

    # Moodle has the archive, checked and finished; the token is gone on both sides.
    mjob = moodle.job(job_id)
    assert mjob.status_name == "FINISHED" and not mjob.token_valid
    assert mjob.artifact is not None
    assert status["artifact"]["size"] == len(mjob.artifact)
    assert status["artifact"]["sha256"] == mjob.artifact_sha256
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])

    # Progress rose in the ArchiveJob's status while the pod ran.
    progress = [p for phase, p, _ in samples if phase == "Running" and p is not None]
    assert len(set(progress)) >= 3 and progress == sorted(progress), samples
    assert any(0 < p < 100 for p in progress), samples
    reasons = [e.reason for e in h.events(name)]
    # Before admission the job waited for a slot (Queued) or, when the operator saw it
    # before the gateway had created its token Secret, for that Secret.
    assert {"Queued", "WaitingForTokenSecret"} & set(reasons), reasons
    for expected in ("Admitted", "Running", "Finalizing", "Succeeded"):
        assert expected in reasons, reasons
    meta = h.archivejob(name)["metadata"]
    assert meta["labels"]["moodlearchiver.io/finished"] == "true"
    # No finalizer and no Kopf bookkeeping on the object: a namespace never hangs on us.
    assert not meta.get("finalizers")
    assert not any("kopf" in key for key in meta.get("annotations") or {})
    assert_no_token_leak(h, gateway_logs)


def _allowed(api: client.ApiClient, namespace: str, verb: str, resource: str,
             name: str = "", subresource: str = "", group: str = GROUP) -> bool:  # fmt: skip
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, verb=verb, group=group, resource=resource,
                name=name or None, subresource=subresource or None,
            )
        )
    )  # fmt: skip
    result = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(result.status.allowed)


def _status_code(call: Any) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_the_job_service_account_may_patch_its_own_status_and_nothing_else(
    harness: Harness,
) -> None:
    h = harness
    h.operator(
        MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_MAX_PARALLEL_JOBS="2"
    )
    mine, _ = h.submit()
    other, _ = h.submit()
    name, other_name = mine["metadata"]["name"], other["metadata"]["name"]
    h.wait_running_pod(name)
    token = create_service_account_token(h.api, h.namespace, name)
    api = client_for_token(h.cluster, token)
    ns = h.namespace
    try:
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        patch = {"status": {"runnerPhase": "Running", "progress": 7}}
        assert _status_code(lambda: custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, patch)) == 200  # fmt: skip
        assert h.archivejob(name)["status"]["progress"] == 7
        assert _status_code(lambda: custom.get_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name)) == 200  # fmt: skip
        denied = {
            "other's status": lambda: custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns, PLURAL, other_name, patch),
            "own spec": lambda: custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name, {"spec": {"cancelRequested": True}}),
            "own object": lambda: custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name),
            "list": lambda: custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL),
            "delete": lambda: custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name),
            "token secret": lambda: core.read_namespaced_secret(
                mine["spec"]["tokenSecretName"], ns),
            "pods": lambda: core.list_namespaced_pod(ns),
            "configmap": lambda: core.read_namespaced_config_map(name, ns),
        }  # fmt: skip
        for what, call in denied.items():
            assert _status_code(call) == 403, what
        assert _allowed(api, ns, "patch", PLURAL, name, "status")
        assert _allowed(api, ns, "get", PLURAL, name, "status")
        for verb, resource, obj, sub, group in [
            ("patch", PLURAL, other_name, "status", GROUP),
            ("update", PLURAL, name, "status", GROUP),
            ("patch", PLURAL, name, "", GROUP),
            ("get", PLURAL, name, "", GROUP),
            ("list", PLURAL, "", "", GROUP),
            ("create", PLURAL, "", "", GROUP),
            ("get", "secrets", mine["spec"]["tokenSecretName"], "", ""),
            ("create", "pods", "", "", ""),
            ("create", "serviceaccounts", name, "token", ""),
        ]:
            assert not _allowed(api, ns, verb, resource, obj, sub, group), (verb, resource, sub)
    finally:
        api.close()
    assert_no_token_leak(h)
