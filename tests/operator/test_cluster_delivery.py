"""The final status is a duty, on the real control plane with the strict fake Moodle: what
the job pod could not tell Moodle, the operator redelivers with backoff (also across an
operator restart) until Moodle answers or the token expires, and only then deletes the
token Secret; a deleted queued or running ArchiveJob ends with Moodle told FAILED."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from moodle_archive_operator.archivejob import ANNOTATION_DELIVERY_STATE
from tests.operator.conftest import KWOK, RUN_FOREVER, Harness
from tests.operator.leaks import assert_no_token_leak
from tests.operator.test_cluster_flow import FAST_RUNNER
from tests.support.cluster_fixtures import eventually

pytestmark = pytest.mark.cluster

QUICK_REDELIVERY = {"MAO_MOODLE_REDELIVERY_BASE_SEC": "1", "MAO_MOODLE_REDELIVERY_MAX_SEC": "2"}
PROCESS = "quiz_archiver_process_uploaded_artifact"
FAIL_FAST = {f"{KWOK}/outcome": "fail", f"{KWOK}/exit-code": "1", f"{KWOK}/run-duration": "500ms"}


@pytest.fixture(autouse=True)
def _moodle_back_up(harness: Harness) -> Iterator[None]:
    yield
    harness.moodle.faults.clear()


def notified(h: Harness, name: str) -> tuple[str, str] | None:
    aj = h.archivejob(name) or {}
    cond = next((c for c in aj.get("status", {}).get("conditions", [])
                 if c["type"] == "MoodleNotified"), None)  # fmt: skip
    return (cond["status"], cond["reason"]) if cond else None


def wait_notified(h: Harness, name: str, want: tuple[str, str], timeout: float = 90) -> None:
    try:
        eventually(lambda: notified(h, name) == want, timeout=timeout,
                   what=f"MoodleNotified {want} (now {notified(h, name)})")  # fmt: skip
    except BaseException:
        print(h.operator_logs()[-6000:])
        raise


def metrics(h: Harness) -> str:
    port = h.operators[-1].metrics_port
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def worker_statuses(h: Harness, aj: dict[str, Any], status: str) -> int:
    job = h.moodle.job(aj["spec"]["jobId"])
    return sum(1 for u in job.status_updates if u.source == "worker" and u.status == status)


def test_moodle_down_across_the_end_of_a_job_gets_it_when_back(harness: Harness) -> None:
    h = harness
    runner = {**FAST_RUNNER, "QUIZ_ARCHIVER_MOODLE_RETRIES": "1",
              "QUIZ_ARCHIVER_MOODLE_RETRY_BACKOFF_SEC": "0.2"}  # fmt: skip
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_JOB_ENV=runner, **QUICK_REDELIVERY)
    h.moodle.faults.set_latency("report", 1.0)
    aj, _ = h.submit(h.fake_job(attempts=6))
    name, secret = aj["metadata"]["name"], aj["spec"]["tokenSecretName"]
    player = h.play(name)
    eventually(lambda: (h.archivejob(name) or {}).get("status", {}).get("attemptsDone", 0) >= 1,
               timeout=120, what="the runner to be at work")  # fmt: skip
    h.moodle.faults.down("refuse")
    assert player.wait(timeout=120) == 1, player.logs()[-3000:]
    final = h.wait_phase(name)
    assert final["status"]["phase"] == "Failed"
    # The runner could not tell Moodle; it said so, and the operator carries the duty.
    wait_notified(h, name, ("False", "Redelivering"))
    owing = h.archivejob(name)["status"]
    assert owing["pendingMoodleStatus"] == "FAILED" and owing["moodleDeliveryAttempts"] >= 1
    assert h.secret_exists(secret)
    assert h.moodle.job(aj["spec"]["jobId"]).status_name == "RUNNING"
    # An operator restart carries on with the schedule in the status.
    h.operators[0].kill()
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_JOB_ENV=runner, **QUICK_REDELIVERY)
    before = owing["moodleDeliveryAttempts"]
    eventually(lambda: h.archivejob(name)["status"]["moodleDeliveryAttempts"] > before,
               timeout=60, what="a try by the new operator")  # fmt: skip
    h.moodle.faults.up()
    wait_notified(h, name, ("True", "Delivered"))
    h.wait_gone("Secret", secret)
    status = h.archivejob(name)["status"]
    assert status["moodleStatus"] == "FAILED" and "pendingMoodleStatus" not in status
    assert h.moodle.job(aj["spec"]["jobId"]).status_name == "FAILED"
    assert worker_statuses(h, aj, "FAILED") == 1
    events = h.events(name)
    failed = [e for e in events if e.reason == "MoodleNotifyFailed"]
    told = [e for e in events if e.reason == "MoodleNotified"]
    assert failed and len(told) == 1, [e.reason for e in events]
    # Event times have whole seconds: the success may share its second with the last failure.
    assert told[0].first_timestamp >= max(e.last_timestamp or e.first_timestamp for e in failed)
    assert_no_token_leak(h)


def test_a_processing_answer_lost_on_its_way_back_ends_succeeded(harness: Harness) -> None:
    """Moodle stored the archive, but the runner got a 504 instead of its answer: the
    operator's redelivery finds the token gone (Moodle deletes it when it stores an archive),
    which means the earlier call went through."""
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_JOB_ENV=FAST_RUNNER, **QUICK_REDELIVERY)
    h.moodle.faults.lose_answer_next(PROCESS, status=504)
    aj, _ = h.submit(h.fake_job(attempts=1))
    name, secret = aj["metadata"]["name"], aj["spec"]["tokenSecretName"]
    assert h.play(name).wait(timeout=120) == 1  # the runner could not know Moodle has it
    wait_notified(h, name, ("True", "AlreadyFinal"))
    final = h.wait_phase(name, ("Succeeded",), timeout=10)
    status = final["status"]
    assert h.condition(final, "Succeeded")["status"] == "True", status
    assert "already processed the archive" in status["message"], status
    assert "pendingArtifact" not in status and status["moodleStatus"] == "FINISHED"
    mjob = h.moodle.job(aj["spec"]["jobId"])
    assert mjob.status_name == "FINISHED" and mjob.artifact is not None
    calls = [c for c in h.moodle.calls_for(aj["spec"]["jobId"]) if c.wsfunction == PROCESS]
    assert [(c.fault, c.errorcode) for c in calls] == [("lost-answer:504", None),
                                                       (None, "invalidtoken")]  # fmt: skip
    h.wait_gone("Secret", secret)
    assert_no_token_leak(h)


def test_moodle_never_back_gives_up_when_the_token_expires(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=FAIL_FAST, **QUICK_REDELIVERY)
    h.moodle.faults.down("refuse")
    aj, _ = h.submit(timeout=25)  # the token's lifetime: creation + 25 s
    name, secret = aj["metadata"]["name"], aj["spec"]["tokenSecretName"]
    wait_notified(h, name, ("False", "Redelivering"), timeout=30)
    assert h.secret_exists(secret)
    pending = 'moodle_archiver_operator_moodle_deliveries_pending{status="FAILED"} 1.0'
    eventually(lambda: pending in metrics(h), timeout=10, what="the pending redelivery counted")
    wait_notified(h, name, ("False", "TokenExpired"), timeout=60)
    h.wait_gone("Secret", secret)
    final = h.archivejob(name)
    assert "pendingMoodleStatus" not in final["status"]
    assert final["status"]["moodleDeliveryAttempts"] >= 3
    assert "TokenExpired" in [e.reason for e in h.events(name)]
    given_up = ('moodle_archiver_operator_moodle_deliveries_abandoned_total'
                '{reason="TokenExpired",status="FAILED"} 1.0')  # fmt: skip
    assert given_up in metrics(h)
    h.moodle.faults.up()
    assert h.moodle.job(aj["spec"]["jobId"]).status_name == "AWAITING_PROCESSING"
    assert_no_token_leak(h)


def test_deleting_a_queued_archivejob_tells_moodle_failed(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER, MAO_MAX_PARALLEL_JOBS="1")
    h.submit()  # holds the only slot
    queued, _ = h.submit()
    name = queued["metadata"]["name"]
    h.wait_phase(name, ("Queued",))
    h.delete(name)
    eventually(lambda: h.moodle.job(queued["spec"]["jobId"]).status_name == "FAILED",
               timeout=60, what="Moodle told FAILED")  # fmt: skip
    h.wait_gone("Secret", queued["spec"]["tokenSecretName"])
    assert worker_statuses(h, queued, "FAILED") == 1
    assert not h.moodle.job(queued["spec"]["jobId"]).token_valid
    assert "MoodleNotified" in [e.reason for e in h.events(name)]  # on the deleted name
    assert h.job(name) is None  # never admitted
    assert_no_token_leak(h)


def test_a_deleted_archivejob_found_later_by_housekeeping(harness: Harness) -> None:
    """Deleted while no operator ran: the next one finds the Secret and tells Moodle."""
    h = harness
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    h.delete(name)
    h.operator(MAO_ORPHAN_GRACE_SEC="0")
    eventually(lambda: h.moodle.job(aj["spec"]["jobId"]).status_name == "FAILED",
               timeout=60, what="Moodle told FAILED")  # fmt: skip
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    assert worker_statuses(h, aj, "FAILED") == 1


def test_an_orphaned_tokens_backoff_survives_an_operator_restart(harness: Harness) -> None:
    """The schedule of a deleted ArchiveJob's redelivery is on its token Secret: a restarted
    operator waits out the backoff instead of trying again at once."""
    h = harness
    aj, _ = h.submit()
    name, secret = aj["metadata"]["name"], aj["spec"]["tokenSecretName"]
    h.delete(name)
    h.moodle.faults.down("refuse")
    slow = {"MAO_ORPHAN_GRACE_SEC": "0", "MAO_MOODLE_REDELIVERY_BASE_SEC": "20"}  # 16-24 s
    h.operator(**slow)

    def tries() -> int:
        return sum(e.reason == "MoodleNotifyFailed" for e in h.events(name))

    eventually(lambda: tries() == 1, timeout=30, what="a first try")
    annotations = h.core.read_namespaced_secret(secret, h.namespace).metadata.annotations
    state = json.loads(annotations[ANNOTATION_DELIVERY_STATE])
    assert (state["status"], state["attempts"]) == ("FAILED", 1), state
    h.operators[0].kill()
    h.operator(**slow)
    time.sleep(6)  # the new operator's housekeeping (every 2 s) visited the Secret
    assert tries() == 1, "the restarted operator tried again before the backoff ran out"
    h.moodle.faults.up()
    eventually(lambda: h.moodle.job(aj["spec"]["jobId"]).status_name == "FAILED",
               timeout=40, what="Moodle told FAILED")  # fmt: skip
    h.wait_gone("Secret", secret)
    assert tries() == 1 and worker_statuses(h, aj, "FAILED") == 1
