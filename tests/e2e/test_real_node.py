"""The whole product on a real node: Moodle's request -> gateway -> ArchiveJob -> operator ->
Job pod (containerd + runc) -> archive stored in the fake Moodle; and what happens when the
pod is deleted, its container killed, or the kubelet restarted mid-run."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from moodle_archive_operator.archivejob import GROUP, PLURAL
from tests.fakemoodle import FakeMoodle, Job, Quiz
from tests.runner.test_archive_end_to_end import (
    FILE_PATTERN,
    FOLDER_PATTERN,
    check_attempt_files,
    check_sidecars,
    expected_csv,
    expected_files,
)
from tests.support.nodestack import NodeStack

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow]

JOB_UID = 1000
MB = 1_000_000


def new_job(moodle: FakeMoodle, quiz: Quiz, backups: tuple[str, ...] = ()) -> Job:
    return moodle.create_job(
        quiz, backups=backups, foldername_pattern=FOLDER_PATTERN, filename_pattern=FILE_PATTERN
    )


def submit(stack: NodeStack, moodle: FakeMoodle, job: Job) -> str:
    result = moodle.submit_job(job, stack.gateway_url)
    assert result.ok, f"the gateway refused the task: {result.http_status} {result.message}"
    return str(result.data["jobid"])


def check_archive(
    moodle: FakeMoodle, quiz: Quiz, job: Job, job_id: str, tmp: Path, status: dict[str, Any]
) -> None:
    """The archive Moodle stored: the reference layout, checksums, PDFs with the attempts'
    text and typeset formulas, and the checksum the ArchiveJob reports."""
    state = moodle.job(job_id)
    assert state.status_name == "FINISHED" and not state.token_valid
    artifact = state.artifact
    assert artifact is not None, "Moodle stored no archive"
    backups = [b["filename"] for b in job.request_body.get("task_moodle_backups") or []]
    with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
        assert set(zf.namelist()) == expected_files(quiz, backups, html=False)
        check_sidecars(zf)
        assert zf.read("attempts_metadata.csv") == expected_csv(quiz)
        check_attempt_files(zf, quiz, tmp)
    assert status["artifact"]["sha256"] == hashlib.sha256(artifact).hexdigest()
    assert status["artifact"]["size"] == len(artifact)


def job_counts(stack: NodeStack, obj: dict[str, Any], timeout: float = 60) -> tuple[int, int]:
    """(succeeded, failed) pods of the ArchiveJob's Job once the Job has finished (the
    ArchiveJob may be final a moment before: the runner reports before it exits)."""
    batch = client.BatchV1Api(stack.api)
    deadline = time.monotonic() + timeout
    while True:
        job = batch.read_namespaced_job(obj["status"]["jobName"], stack.jobs_namespace)
        finished = {c.type for c in job.status.conditions or [] if c.status == "True"}
        if finished & {"Complete", "Failed"} or time.monotonic() > deadline:
            return job.status.succeeded or 0, job.status.failed or 0
        time.sleep(0.5)


def wait_running(stack: NodeStack, job_id: str, min_done: int = 1, timeout: float = 300) -> Any:
    """The job's pod, once the runner reported at least `min_done` attempts rendered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = stack.archivejob(job_id) or {}
        done = (obj.get("status") or {}).get("attemptsDone") or 0
        pods = [
            p
            for p in stack.job_pods(job_id)
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]
        if done >= min_done and pods:
            return pods[0]
        time.sleep(0.3)
    raise AssertionError(
        f"job {job_id} never ran with {min_done} attempts done:\n{stack.diagnose()}"
    )


def secret_exists(stack: NodeStack, obj: dict[str, Any], wait: float = 30) -> bool:
    """Whether the token Secret is still there `wait` s after the final state: the operator
    deletes it once Moodle owes nothing (right after the final state, as a rule)."""
    deadline = time.monotonic() + wait
    while _secret_exists(stack, obj) and time.monotonic() < deadline:
        time.sleep(0.3)
    return _secret_exists(stack, obj)


def _secret_exists(stack: NodeStack, obj: dict[str, Any]) -> bool:
    return stack.secret_exists(obj["spec"]["tokenSecretName"])


def can(
    stack: NodeStack,
    user: str,
    verb: str,
    resource: str,
    name: str = "",
    sub: str = "",
    group: str = GROUP,
) -> bool:
    namespace = stack.jobs_namespace
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                resource=resource,
                name=name or None,
                subresource=sub or None,
                namespace=namespace,
                group=group,
            ),
        )
    )
    return bool(
        client.AuthorizationV1Api(stack.api).create_subject_access_review(review).status.allowed
    )


def test_a_quiz_is_archived_through_the_real_node(
    stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    moodle = fresh_moodle
    quiz = moodle.create_quiz(attempts=4, with_formulas=True, attachments_per_attempt=1)
    job = new_job(moodle, quiz, ("quiz",))
    job_id = submit(stack, moodle, job)
    seen: list[str] = []
    final = stack.wait_final(job_id, timeout=600, on_status=lambda s: seen.append(s.get("phase")))
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    assert "Running" in seen and status["runnerPhase"] == "Succeeded"
    assert (status["attemptsDone"], status["attemptsTotal"], status["progress"]) == (4, 4, 100)
    check_archive(moodle, quiz, job, job_id, tmp_path, status)
    assert not secret_exists(stack, final), "the token Secret outlived the job"
    assert job_counts(stack, final) == (1, 0)

    # The pod that ran: non-root on a read-only root filesystem, as containerd ran it.
    assert stack.node is not None
    [pod] = stack.job_pods(job_id)
    assert pod.spec.node_name == stack.node.name
    assert pod.spec.automount_service_account_token is False
    [container_id] = stack.node.container_ids(pod.metadata.name, "runner")
    runtime = stack.node.inspect_container(container_id)["info"]["runtimeSpec"]
    assert runtime["process"]["user"]["uid"] == JOB_UID
    assert runtime["root"].get("readonly") is True
    assert runtime["process"].get("noNewPrivileges") is True
    assert not runtime["process"]["capabilities"].get("effective")

    # Its ServiceAccount may get/patch its own ArchiveJob's status and nothing else.
    user = f"system:serviceaccount:{stack.jobs_namespace}:{pod.spec.service_account_name}"
    own = final["metadata"]["name"]
    assert can(stack, user, "patch", PLURAL, own, "status")
    assert can(stack, user, "get", PLURAL, own, "status")
    denied = [
        ("patch", PLURAL, "other-job", "status", GROUP),
        ("get", PLURAL, own, "", GROUP),
        ("list", PLURAL, "", "", GROUP),
        ("patch", PLURAL, own, "", GROUP),
        ("get", "secrets", final["spec"]["tokenSecretName"], "", ""),
        ("list", "pods", "", "", ""),
        ("create", "pods", "", "", ""),
        ("create", "events", "", "", ""),
    ]
    for verb, resource, name, sub, group in denied:
        assert not can(stack, user, verb, resource, name, sub, group), (verb, resource, sub)


def test_pod_deleted_mid_run_is_replaced_and_the_job_succeeds(
    stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    moodle = fresh_moodle
    moodle.faults.report_latency = 1.5
    quiz = moodle.create_quiz(attempts=6, with_formulas=True, attachments_per_attempt=0)
    job = new_job(moodle, quiz)
    job_id = submit(stack, moodle, job)
    pod = wait_running(stack, job_id)
    stack.core.delete_namespaced_pod(pod.metadata.name, stack.jobs_namespace)
    moodle.faults.report_latency = 0.1
    final = stack.wait_final(job_id, timeout=600)
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    check_archive(moodle, quiz, job, job_id, tmp_path, status)
    assert job_counts(stack, final) == (1, 1)  # the deleted pod counts as one failure
    assert not secret_exists(stack, final)
    # Moodle saw one run end: FINISHED once, never FAILED.
    statuses = [s for s, _ in moodle.job(job_id).statusextras_history]
    assert statuses[-1] == "FINISHED" and "FAILED" not in statuses


def test_container_killed_in_every_try_fails_on_both_sides(
    stack: NodeStack, fresh_moodle: FakeMoodle
) -> None:
    moodle = fresh_moodle
    moodle.faults.report_latency = 1.5
    quiz = moodle.create_quiz(attempts=6, with_formulas=False, attachments_per_attempt=0)
    job = new_job(moodle, quiz)
    job_id = submit(stack, moodle, job)
    assert stack.node is not None
    killed: set[str] = set()
    for _ in range(2):  # backoffLimit 1: the first try and one retry
        deadline = time.monotonic() + 300
        while True:
            pods = [
                p
                for p in stack.job_pods(job_id)
                if p.metadata.name not in killed and p.status.phase == "Running"
            ]
            ids = stack.node.container_ids(pods[0].metadata.name, "runner") if pods else []
            if (
                ids
                and stack.node.inspect_container(ids[0])["status"]["state"] == "CONTAINER_RUNNING"
            ):
                break
            assert time.monotonic() < deadline, stack.diagnose()
            time.sleep(0.3)
        time.sleep(3)  # mid-run: the runner has started talking to Moodle
        stack.node.kill_container(ids[0])
        killed.add(pods[0].metadata.name)
    final = stack.wait_final(job_id, timeout=300)
    status = final["status"]
    assert status["phase"] == "Failed", status
    assert job_counts(stack, final) == (0, 2)
    state = moodle.job(job_id)
    # The operator tells Moodle right after writing the final state, then deletes the Secret.
    assert not secret_exists(stack, final)
    assert state.status_name == "FAILED" and state.artifact is None and not state.token_valid


def test_kubelet_restart_mid_run_loses_nothing(
    stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    moodle = fresh_moodle
    moodle.faults.report_latency = 1.0
    quiz = moodle.create_quiz(attempts=6, with_formulas=True, attachments_per_attempt=0)
    job = new_job(moodle, quiz)
    job_id = submit(stack, moodle, job)
    pod = wait_running(stack, job_id)
    assert stack.node is not None
    # Hold the runner on Moodle (well within its 60 s read timeout) while the kubelet is away
    # and catching up, so the container runs through the restart instead of finishing during
    # it: the restart must come mid-run.
    moodle.faults.report_latency = 20.0
    stack.node.restart_kubelet(down_seconds=5)
    stack.node.wait_ready(timeout=120)
    time.sleep(5)
    assert not (stack.archivejob(job_id) or {}).get("status", {}).get("completionTime")
    moodle.faults.report_latency = 0.1
    final = stack.wait_final(job_id, timeout=600)
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    check_archive(moodle, quiz, job, job_id, tmp_path, status)
    assert job_counts(stack, final) == (1, 0)
    [after] = stack.job_pods(job_id)
    assert after.metadata.uid == pod.metadata.uid, "the pod was replaced"
    [container_id] = stack.node.container_ids(pod.metadata.name, "runner")
    assert stack.node.inspect_container(container_id)["status"]["exitCode"] == 0


def test_archivejobs_are_listed_with_their_columns(stack: NodeStack) -> None:
    table = stack.kubectl("get", "archivejobs", "-n", stack.jobs_namespace)
    header = table.splitlines()[0].split()
    assert header[:3] == ["NAME", "PHASE", "PROGRESS"] and "AGE" in header
    assert "Succeeded" in table and "Failed" in table


def test_an_archive_above_moodles_upload_limit_goes_up_in_chunks(
    stack: NodeStack, fresh_moodle: FakeMoodle
) -> None:
    # A site on the plugin's next generation (it sends its upload limit, 10 MB here) and a
    # student file of 100 MB: the archive reaches Moodle in chunks, reassembled and verified
    # by Moodle, through the gateway, the ArchiveJob and the job pod.
    moodle = fresh_moodle
    moodle.site.config.plugin_release = "next"
    try:
        moodle.faults.max_upload_bytes = 10 * MB
        moodle.faults.post_max_size = 10 * MB
        moodle.faults.attachment_oversize_bytes = 100 * MB
        quiz = moodle.create_quiz(attempts=1, with_formulas=False, attachments_per_attempt=1)
        job = new_job(moodle, quiz)
        assert job.request_body["moodle_max_upload_bytes"] == 10 * MB
        job_id = submit(stack, moodle, job)
        assert stack.archivejob(job_id)["spec"]["moodleMaxUploadBytes"] == 10 * MB
        final = stack.wait_final(job_id, timeout=600)
    finally:
        moodle.site.config.plugin_release = "4.1.0"
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    state = moodle.job(job_id)
    assert state.status_name == "FINISHED" and state.artifact is not None
    assert len(state.artifact) > 100 * MB
    assert hashlib.sha256(state.artifact).hexdigest() == status["artifact"]["sha256"]
    calls = moodle.calls_for(job_id)
    uploads = [c for c in calls if c.endpoint == "upload"]
    assert len(uploads) >= 11 and all(c.bytes_in <= 10 * MB for c in uploads)
    (process,) = [c for c in calls if c.wsfunction == "quiz_archiver_process_uploaded_artifact"]
    assert process.params["artifact_count"] == str(len(uploads))
    assert not moodle.site.drafts
    assert not secret_exists(stack, final)
