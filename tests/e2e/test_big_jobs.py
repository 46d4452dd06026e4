"""Big jobs on the real node: a work volume from the node's local-path-provisioner, resume after
a lost pod, shards as one Indexed Job, and a finisher that is killed.

Kept light for CI: 200 attempts without formulas, attachments or PDF/A, 2 attempts in flight
per pod. What is counted is what Moodle saw: report calls per attempt (a re-rendered attempt
is fetched twice), uploads and the final status.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.browser.pdfs import pdf_text
from tests.e2e.conftest import running_stack
from tests.fakemoodle import FakeMoodle, Job, Quiz
from tests.runner.test_archive_end_to_end import (
    FILE_PATTERN,
    FOLDER_PATTERN,
    check_sidecars,
    expected_csv,
    expected_files,
)
from tests.support.localcluster import LocalCluster
from tests.support.localpath import STORAGE_CLASS
from tests.support.nodestack import NodeStack, StackOptions

# A 200-attempt job takes minutes on 2 shared cores; the first test also starts the stack.
pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]

ATTEMPTS = 200
CONCURRENCY = 2
INDEX = "batch.kubernetes.io/job-completion-index"
REPORT = "quiz_archiver_generate_attempt_report"
PROCESS = "quiz_archiver_process_uploaded_artifact"


@pytest.fixture(scope="module")
def big_stack(
    cluster: LocalCluster, moodle: FakeMoodle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeStack]:
    options = StackOptions(
        max_parallel_jobs=2,
        backoff_limit=2,
        timeout_seconds=1500,
        runner_env={"QUIZ_ARCHIVER_PDFA_CONVERSION": "false"},
        attempt_concurrency=CONCURRENCY,
        work_volume_class=STORAGE_CLASS,
        shards_max=4,
        attempts_per_shard=50,
    )
    with running_stack(cluster, moodle, tmp_path_factory.mktemp("big"), options) as stack:
        yield stack


def light_quiz(moodle: FakeMoodle, attempts: int = ATTEMPTS) -> tuple[Quiz, Job]:
    quiz = moodle.create_quiz(attempts=attempts, with_formulas=False, attachments_per_attempt=0)
    job = moodle.create_job(
        quiz, foldername_pattern=FOLDER_PATTERN, filename_pattern=FILE_PATTERN
    )
    return quiz, job


def report_calls(moodle: FakeMoodle, job_id: str) -> Counter[int]:
    return Counter(
        int(c.params["attemptid"])
        for c in moodle.calls_for(job_id)
        if c.wsfunction == REPORT and c.response_status == "OK"
    )


def check_big_archive(
    moodle: FakeMoodle, quiz: Quiz, job_id: str, tmp: Path, sample: set[int]
) -> None:
    """The reference layout and metadata of a single-pod job, checksums, and the text of the
    PDFs of `sample` attempts (rendering them all to text would take a while)."""
    state = moodle.job(job_id)
    assert state.status_name == "FINISHED" and state.artifact is not None
    with zipfile.ZipFile(io.BytesIO(state.artifact)) as zf:
        assert set(zf.namelist()) == expected_files(quiz, [], html=False)
        assert zf.read("attempts_metadata.csv") == expected_csv(quiz)
        check_sidecars(zf)
        for attempt in (a for a in quiz.attempts if a.id in sample):
            user = quiz.users[attempt.userid]
            pdf = tmp / f"{attempt.id}.pdf"
            folder = f"attempts/{user.username}/{attempt.id}"
            pdf.write_bytes(zf.read(f"{folder}/attempt-{attempt.id}.pdf"))
            text = pdf_text(pdf)
            assert attempt.answer_word in text and user.fullname in text, attempt.id


def wait_done(stack: NodeStack, job_id: str, done: int, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (stack.archivejob(job_id) or {}).get("status") or {}
        if (status.get("attemptsDone") or 0) >= done:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{job_id}: fewer than {done} attempts done:\n{stack.diagnose()}")


def force_delete(stack: NodeStack, pod: client.V1Pod) -> None:
    stack.core.delete_namespaced_pod(
        pod.metadata.name, stack.jobs_namespace, grace_period_seconds=0
    )


def live_pods(stack: NodeStack, job_id: str) -> list[client.V1Pod]:
    return [
        p
        for p in stack.job_pods(job_id)
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    ]


def test_a_pod_lost_halfway_is_replaced_and_resumes(
    big_stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    stack, moodle = big_stack, fresh_moodle
    quiz, job = light_quiz(moodle)
    began = time.monotonic()
    job_id = stack.create_archivejob(job, moodle, maxShards=1)
    wait_done(stack, job_id, ATTEMPTS // 2)
    [pod] = live_pods(stack, job_id)
    force_delete(stack, pod)
    killed_at = time.monotonic() - began
    final = stack.wait_final(job_id, timeout=900)
    took = time.monotonic() - began
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    assert status["workVolume"] == f"{final['metadata']['name']}-work"
    assert status["shardCount"] == 1
    calls = report_calls(moodle, job_id)
    assert set(calls) == set(quiz.attemptids)
    rerendered = {a for a, n in calls.items() if n > 1}
    print(f"\nresume: killed at {killed_at:.0f} s, done in {took:.0f} s; re-rendered "
          f"{sorted(rerendered)}; status {status.get('attemptsResumed')} resumed, "
          f"{status.get('attemptsRerendered')} re-rendered")  # fmt: skip
    assert len(rerendered) <= CONCURRENCY, rerendered
    assert (status.get("attemptsResumed") or 0) >= ATTEMPTS // 2 - CONCURRENCY
    check_big_archive(moodle, quiz, job_id, tmp_path, {quiz.attemptids[0], *rerendered})
    statuses = [s for s, _ in moodle.job(job_id).statusextras_history]
    assert statuses[-1] == "FINISHED" and "FAILED" not in statuses


def test_four_shards_render_each_attempt_once_into_the_same_layout(
    big_stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    stack, moodle = big_stack, fresh_moodle
    quiz, job = light_quiz(moodle)
    began = time.monotonic()
    result = moodle.submit_job(job, stack.gateway_url)  # the whole path: gateway included
    assert result.ok, result.message
    job_id = str(result.data["jobid"])
    nodes: set[str] = set()

    def follow(status: dict[str, Any]) -> None:
        nodes.update(p.spec.node_name for p in stack.job_pods(job_id) if p.spec.node_name)

    final = stack.wait_final(job_id, timeout=900, on_status=follow)
    took = time.monotonic() - began
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    assert status["shardCount"] == 4
    calls = report_calls(moodle, job_id)
    assert set(calls) == set(quiz.attemptids) and set(calls.values()) == {1}
    batch = client.BatchV1Api(stack.api)
    spec = batch.read_namespaced_job(status["jobName"], stack.jobs_namespace).spec
    assert (spec.completion_mode, spec.completions, spec.parallelism) == ("Indexed", 4, 4)
    assert len(nodes) == 1  # ReadWriteOnce: every shard on the volume's node
    uploads = [c for c in moodle.calls_for(job_id) if c.wsfunction == PROCESS]
    assert len(uploads) == 1
    print(f"\n4 shards over {ATTEMPTS} attempts: {took:.0f} s")
    check_big_archive(moodle, quiz, job_id, tmp_path, {quiz.attemptids[0], quiz.attemptids[-1]})


def test_the_finisher_killed_while_uploading_is_replaced_and_uploads_once(
    big_stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    stack, moodle = big_stack, fresh_moodle
    quiz, job = light_quiz(moodle, attempts=40)
    job_id = stack.create_archivejob(job, moodle, maxShards=2, attemptsPerShard=20)
    moodle.faults.set_latency("upload", 8.0)
    try:
        deadline = time.monotonic() + 600
        while True:
            status = (stack.archivejob(job_id) or {}).get("status") or {}
            if status.get("runnerPhase") == "Finalizing" or status.get("phase") == "Finalizing":
                break
            assert time.monotonic() < deadline, stack.diagnose()
            time.sleep(0.2)
        time.sleep(2)  # the upload is under way
        live = live_pods(stack, job_id)
        [finisher] = [p for p in live if p.metadata.annotations[INDEX] == "0"]
        force_delete(stack, finisher)
    finally:
        moodle.faults.set_latency("upload", 0)
    final = stack.wait_final(job_id, timeout=600)
    status = final["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{stack.diagnose()}"
    assert status["shardCount"] == 2
    processed = [c for c in moodle.calls_for(job_id) if c.wsfunction == PROCESS]
    assert len(processed) == 1, [c.response_status for c in processed]
    assert set(report_calls(moodle, job_id)) == set(quiz.attemptids)
    check_big_archive(moodle, quiz, job_id, tmp_path, {quiz.attemptids[0]})
