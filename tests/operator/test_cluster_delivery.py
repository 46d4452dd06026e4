"""The final status is a duty, on the real control plane with the strict fake Moodle: what
the job pod could not tell Moodle, the operator redelivers with backoff (also across an
operator restart) until Moodle answers or the token expires, and only then deletes the
token Secret; a deleted queued or running ArchiveJob ends with Moodle told FAILED."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.operator.conftest import KWOK, RUN_FOREVER, Harness
from tests.operator.leaks import assert_no_token_leak
from tests.operator.test_cluster_flow import FAST_RUNNER
from tests.support.cluster_fixtures import eventually

pytestmark = pytest.mark.cluster

QUICK_REDELIVERY = {"MAO_MOODLE_REDELIVERY_BASE_SEC": "1", "MAO_MOODLE_REDELIVERY_MAX_SEC": "2"}
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
    reasons = [e.reason for e in h.events(name)]
    assert "MoodleNotifyFailed" in reasons and reasons[-1] == "MoodleNotified", reasons
    assert_no_token_leak(h)


def test_moodle_never_back_gives_up_when_the_token_expires(harness: Harness) -> None:
    h = harness
    h.operator(MAO_JOB_POD_ANNOTATIONS=FAIL_FAST, **QUICK_REDELIVERY)
    h.moodle.faults.down("refuse")
    aj, _ = h.submit(timeout=25)  # the token's lifetime: creation + 25 s
    name, secret = aj["metadata"]["name"], aj["spec"]["tokenSecretName"]
    wait_notified(h, name, ("False", "Redelivering"), timeout=30)
    assert h.secret_exists(secret)
    wait_notified(h, name, ("False", "TokenExpired"), timeout=60)
    h.wait_gone("Secret", secret)
    final = h.archivejob(name)
    assert "pendingMoodleStatus" not in final["status"]
    assert final["status"]["moodleDeliveryAttempts"] >= 3
    assert "TokenExpired" in [e.reason for e in h.events(name)]
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
