"""When things go wrong on the real node, Moodle is told and the admin can see why.

* Moodle refuses connections for 3 minutes across the end of two jobs (one rendering, one
  whose upload is in Moodle's draft area awaiting processing): neither job pod can tell
  Moodle; the operator keeps the token Secrets and redelivers until Moodle is back, then
  Moodle shows both jobs' final states and the Secrets go.
* A queued ArchiveJob is deleted: Moodle is told FAILED, and no pod ever ran for it.
* An attempt's page cannot be printed: the pod's termination message and the ArchiveJob name
  it in one line, and `scripts/archivejob-diagnostics.sh` fetches its diagnostics from the
  job's work volume.

Its own release: work volumes from the node's local-path-provisioner, redelivery every few
seconds, no PDF/A (not what is tested here), 2 jobs at a time.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moodle_archive_operator.archivejob import GROUP, PLURAL, VERSION, archivejob_name
from tests.e2e.conftest import running_stack
from tests.fakemoodle import FakeMoodle, Job
from tests.support.cluster_env import REPO_ROOT
from tests.support.cluster_fixtures import eventually
from tests.support.localcluster import LocalCluster
from tests.support.localpath import STORAGE_CLASS
from tests.support.nodestack import NodeStack, StackOptions

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

PROCESS = "quiz_archiver_process_uploaded_artifact"
REPORT = "quiz_archiver_generate_attempt_report"
OUTAGE_SEC = 180
MOODLE_FINAL = ("FINISHED", "FAILED", "TIMEOUT")
DIAGNOSTICS_SCRIPT = REPO_ROOT / "scripts" / "archivejob-diagnostics.sh"


@pytest.fixture(scope="module")
def told_stack(
    cluster: LocalCluster, moodle: FakeMoodle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeStack]:
    options = StackOptions(
        max_parallel_jobs=2,
        backoff_limit=1,
        runner_env={
            "QUIZ_ARCHIVER_PDFA_CONVERSION": "false",
            "QUIZ_ARCHIVER_RENDER_RETRY_BACKOFF_SEC": "0.5",
        },
        operator_env={"MAO_MOODLE_REDELIVERY_BASE_SEC": "2", "MAO_MOODLE_REDELIVERY_MAX_SEC": "8"},
        attempt_concurrency=2,
        work_volume_class=STORAGE_CLASS,
    )
    with running_stack(cluster, moodle, tmp_path_factory.mktemp("told"), options) as stack:
        yield stack


def small_job(moodle: FakeMoodle, attempts: int) -> Job:
    quiz = moodle.create_quiz(attempts=attempts, with_formulas=False, attachments_per_attempt=0)
    return moodle.create_job(quiz)


def submit(stack: NodeStack, moodle: FakeMoodle, job: Job) -> str:
    result = moodle.submit_job(job, stack.gateway_url)
    assert result.ok, f"the gateway refused the task: {result.http_status} {result.message}"
    return str(result.data["jobid"])


def status_of(stack: NodeStack, job_id: str) -> dict[str, Any]:
    return (stack.archivejob(job_id) or {}).get("status") or {}


def notified(stack: NodeStack, job_id: str) -> tuple[str, str] | None:
    conditions = status_of(stack, job_id).get("conditions") or []
    cond = next((c for c in conditions if c["type"] == "MoodleNotified"), None)
    return (cond["status"], cond["reason"]) if cond else None


def wait_notified(stack: NodeStack, job_id: str, want: tuple[str, str], timeout: float) -> None:
    eventually(lambda: notified(stack, job_id) == want, timeout=timeout,
               what=f"MoodleNotified {want} of {job_id}")  # fmt: skip


def worker_statuses(moodle: FakeMoodle, job_id: str) -> list[str]:
    return [u.status for u in moodle.job(job_id).status_updates if u.source == "worker"]


def visible_text(stack: NodeStack) -> str:
    """What an admin can read: the ArchiveJobs, Events, Jobs, pods and ConfigMaps of the
    release's namespaces, and every container log on the node (the operator's included)."""
    api, parts = stack.api, []
    for ns in (stack.options.namespace, stack.jobs_namespace):
        for lister in (stack.core.list_namespaced_event, stack.core.list_namespaced_pod,
                       stack.core.list_namespaced_config_map):  # fmt: skip
            parts.append(api.sanitize_for_serialization(lister(ns)))
    parts.append(stack.custom.list_namespaced_custom_object(
        GROUP, VERSION, stack.jobs_namespace, PLURAL))  # fmt: skip
    assert stack.node is not None
    logs = [p.read_text(errors="replace") for p in stack.node.pod_logs.rglob("*.log")]
    return "\n".join([json.dumps(parts), *logs])


def assert_no_token(stack: NodeStack, *jobs: Job) -> None:
    text = visible_text(stack)
    assert '"logger": "moodle_archive_operator' in text, "the operator's log was not read"
    for job in jobs:
        assert job.token not in text, "a Moodle token leaked into the cluster or a log"


def test_moodle_down_for_3_minutes_across_the_end_of_jobs_is_told_when_back(
    told_stack: NodeStack, fresh_moodle: FakeMoodle
) -> None:
    stack, moodle = told_stack, fresh_moodle
    began = time.monotonic()
    moodle.faults.report_latency = 2.0  # the long job is still rendering when Moodle goes
    moodle.faults.set_latency(PROCESS, 60.0)  # the short job's processing call in flight
    rendering, ending = small_job(moodle, 12), small_job(moodle, 1)
    rendering_id, ending_id = submit(stack, moodle, rendering), submit(stack, moodle, ending)
    eventually(lambda: any(c.wsfunction == PROCESS for c in moodle.calls_for(ending_id)),
               timeout=300, what="the short job's processing call")  # fmt: skip
    assert status_of(stack, rendering_id).get("phase") == "Running", stack.diagnose()

    moodle.faults.down("refuse")  # connection refused; the call in flight is dropped
    down_at = time.monotonic()
    moodle.faults.set_latency(PROCESS, 0)
    # Both job pods end without being able to tell Moodle; the operator carries the duty.
    for job_id in (rendering_id, ending_id):
        wait_notified(stack, job_id, ("False", "Redelivering"), timeout=OUTAGE_SEC - 60)
    failed, processing = status_of(stack, rendering_id), status_of(stack, ending_id)
    assert failed["phase"] == "Failed" and failed["pendingMoodleStatus"] == "FAILED", failed
    assert processing["pendingMoodleStatus"] == "FINISHED", processing
    uploaded_sha256 = processing["pendingArtifact"]["sha256"]
    owing = {j: stack.archivejob(j)["spec"]["tokenSecretName"] for j in (rendering_id, ending_id)}
    assert moodle.job(rendering_id).status_name not in MOODLE_FINAL
    assert moodle.job(ending_id).status_name not in MOODLE_FINAL

    time.sleep(max(0.0, OUTAGE_SEC - (time.monotonic() - down_at)))
    for job_id, secret in owing.items():  # still owed, still tried, the token kept
        status = status_of(stack, job_id)
        assert status["pendingMoodleStatus"] and status["moodleDeliveryAttempts"] >= 5, status
        assert notified(stack, job_id) == ("False", "Redelivering")
        assert stack.secret_exists(secret), f"{job_id}: the token Secret went while owed"
    moodle.faults.up()
    back_at = time.monotonic()
    for job_id in owing:
        wait_notified(stack, job_id, ("True", "Delivered"), timeout=60)
    told_after = time.monotonic() - back_at

    # Moodle's own record: the rendering job FAILED, the other one's archive processed.
    assert moodle.job(rendering_id).status_name == "FAILED"
    assert worker_statuses(moodle, rendering_id).count("FAILED") == 1
    done = moodle.job(ending_id)
    assert done.status_name == "FINISHED" and done.artifact is not None
    assert hashlib.sha256(done.artifact).hexdigest() == uploaded_sha256
    final = status_of(stack, ending_id)
    assert final["phase"] == "Succeeded" and final["moodleStatus"] == "FINISHED", final
    assert status_of(stack, rendering_id)["moodleStatus"] == "FAILED"
    for job_id in owing:
        assert "pendingMoodleStatus" not in status_of(stack, job_id)
    eventually(lambda: not any(stack.secret_exists(s) for s in owing.values()), timeout=30,
               what="the token Secrets to go")  # fmt: skip
    assert_no_token(stack, rendering, ending)
    print(f"\nMoodle down {OUTAGE_SEC} s; told {told_after:.1f} s after it came back; "
          f"tries {[status_of(stack, j)['moodleDeliveryAttempts'] for j in owing]}; "
          f"{time.monotonic() - began:.0f} s in all")  # fmt: skip


def test_a_queued_archivejob_deleted_tells_moodle_and_never_runs(
    told_stack: NodeStack, fresh_moodle: FakeMoodle
) -> None:
    stack, moodle = told_stack, fresh_moodle
    moodle.faults.report_latency = 60.0  # the two running jobs hold both slots
    holders = [small_job(moodle, 1) for _ in range(2)]
    holder_ids = [submit(stack, moodle, job) for job in holders]
    eventually(lambda: all(status_of(stack, j).get("phase") == "Running" for j in holder_ids),
               timeout=180, what="the two jobs to run")  # fmt: skip
    queued = small_job(moodle, 1)
    queued_id = submit(stack, moodle, queued)
    eventually(lambda: status_of(stack, queued_id).get("phase") == "Queued", timeout=60,
               what="the third job to queue")  # fmt: skip
    secret = stack.archivejob(queued_id)["spec"]["tokenSecretName"]
    stack.custom.delete_namespaced_custom_object(
        GROUP, VERSION, stack.jobs_namespace, PLURAL, archivejob_name(queued_id)
    )
    eventually(lambda: moodle.job(queued_id).status_name == "FAILED", timeout=60,
               what="Moodle to be told FAILED")  # fmt: skip
    eventually(lambda: not stack.secret_exists(secret), timeout=30, what="the Secret to go")
    assert not moodle.job(queued_id).token_valid
    assert worker_statuses(moodle, queued_id) == ["FAILED"]  # never RUNNING: no pod ran
    assert not [c for c in moodle.calls_for(queued_id) if c.wsfunction == REPORT]
    assert not stack.job_pods(queued_id)
    events = stack.core.list_namespaced_event(
        stack.jobs_namespace,
        field_selector=f"involvedObject.name={archivejob_name(queued_id)}",
    ).items
    assert "MoodleNotified" in [e.reason for e in events]
    # The running ones, deleted too, are told as well.
    for job_id in holder_ids:
        assert status_of(stack, job_id).get("phase") == "Running"
        stack.custom.delete_namespaced_custom_object(
            GROUP, VERSION, stack.jobs_namespace, PLURAL, archivejob_name(job_id)
        )
    moodle.faults.report_latency = 0.1
    eventually(lambda: all(moodle.job(j).status_name == "FAILED" for j in holder_ids),
               timeout=60, what="Moodle told the deleted running jobs FAILED")  # fmt: skip
    assert_no_token(stack, queued, *holders)


def test_a_failed_attempt_is_named_and_its_diagnostics_fetched_from_the_volume(
    told_stack: NodeStack, fresh_moodle: FakeMoodle, tmp_path: Path
) -> None:
    stack, moodle = told_stack, fresh_moodle
    moodle.faults.fail_next("static", n=10_000, status=503)  # the theme's stylesheet and scripts
    quiz = moodle.create_quiz(attempts=1, with_formulas=False, attachments_per_attempt=0)
    [attempt] = quiz.attemptids
    job = moodle.create_job(quiz)
    job_id = submit(stack, moodle, job)
    final = stack.wait_final(job_id, timeout=300)
    status = final["status"]
    assert status["phase"] == "Failed", f"{status}\n{stack.diagnose()}"
    assert status["workVolume"] == f"{final['metadata']['name']}-work"
    assert status["failedAttempts"] == [attempt]
    assert moodle.job(job_id).status_name == "FAILED"
    # One line naming the attempt and the cause: the container's termination message, the
    # ArchiveJob's message.
    [pod] = stack.job_pods(job_id)
    [container] = pod.status.container_statuses
    terminated = container.state.terminated
    assert terminated is not None and terminated.exit_code == 1
    line = terminated.message.strip()
    assert "\n" not in line and len(line) <= 300, line
    assert f"attempt {attempt}" in line and "503" in line, line
    assert "\n" not in status["message"] and f"attempt {attempt}" in status["message"]

    # The admin's way to the diagnostics: the documented script, with kubectl.
    done = subprocess.run(
        ["sh", str(DIAGNOSTICS_SCRIPT), final["metadata"]["name"], "-n", stack.jobs_namespace],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{stack.diagnose()}"
    folder = tmp_path / f"diagnostics-{job_id}" / f"attempt-{attempt}"
    names = {p.name for p in folder.iterdir()}
    assert {"reason.txt", "screenshot.png", "page.html", "console.txt",
            "requests.json"} <= names, names  # fmt: skip
    assert (folder / "screenshot.png").read_bytes().startswith(b"\x89PNG")
    assert "answered HTTP 503" in (folder / "reason.txt").read_text()
    assert "503" in json.dumps(json.loads((folder / "requests.json").read_text()))
    for path in folder.iterdir():
        assert job.token.encode() not in path.read_bytes(), path.name
    assert_no_token(stack, job)
    assert not [p for p in stack.core.list_namespaced_pod(stack.jobs_namespace).items
                if p.metadata.name.startswith("diagnostics-")
                and not p.metadata.deletion_timestamp]  # fmt: skip
