"""Accepting tasks over HTTP: probe, capacity, persistence and rollback (in-memory API server)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from moodle_archive_job.moodle_client import MoodleUnreachable, ProbeFailed
from moodle_archive_operator.archivejob import ArchiveJobSpec
from moodle_archive_operator.gateway.kube import KubeError
from tests.gateway.conftest import FakeProbe
from tests.gateway.fakekube import FakeKube
from tests.unit.request_bodies import TOKEN, v1_body, v7_body

QUEUE_FULL = {"error": "Maximum number of queued jobs exceeded."}
STORE_FAILED = {"error": "The archive worker could not store the job. Please try again later."}


def accepted_job_id(response: Any) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"jobid", "status"} and body["status"] == "AWAITING_PROCESSING"
    assert uuid.UUID(body["jobid"]).version == 4 and len(body["jobid"]) == 36
    return str(body["jobid"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/archive", v7_body()),
        ("/archive/quiz_archiver", v7_body()),
        ("/archive/archivingmod_quiz", v1_body()),
    ],
)
def test_accepted_task_becomes_an_archivejob_with_a_token_secret(
    make_client: Callable[..., TestClient],
    kube: FakeKube,
    probe: FakeProbe,
    path: str,
    body: dict[str, Any],
) -> None:
    client = make_client(accepted_events=True)
    job_id = accepted_job_id(client.post(path, json=body))
    obj = kube.archivejobs[f"archive-{job_id}"]
    spec = ArchiveJobSpec.model_validate(obj["spec"])
    assert spec.job_id == job_id and obj["metadata"]["labels"]["moodlearchiver.io/job-id"] == job_id
    (task, token, timeout), = probe.calls
    assert token == TOKEN and 0 < timeout <= 8
    assert spec.moodle.ws_url == task.moodle.ws_url
    secret = kube.secrets[spec.token_secret_name]
    assert secret["stringData"] == {"token": TOKEN}
    # Named by label, not owned: it outlives a deleted ArchiveJob until Moodle is told.
    uid_label = secret["metadata"]["labels"]["moodlearchiver.io/archivejob-uid"]
    assert uid_label == obj["metadata"]["uid"]
    assert "ownerReferences" not in secret["metadata"]
    (event,) = kube.events
    assert event["reason"] == "Accepted" and event["involvedObject"]["name"] == f"archive-{job_id}"


def test_no_accepted_event_by_default(client: TestClient, kube: FakeKube) -> None:
    """The operator's first Event (Queued or the admission) reports the new job."""
    accepted_job_id(client.post("/archive", json=v7_body()))
    assert kube.events == [] and "create_event" not in kube.calls


def test_every_task_gets_a_new_job_id(client: TestClient, kube: FakeKube) -> None:
    ids = {accepted_job_id(client.post("/archive", json=v7_body())) for _ in range(5)}
    assert len(ids) == 5 and len(kube.archivejobs) == 5


def test_wrong_token_is_refused_with_the_reference_message(
    client: TestClient, kube: FakeKube, probe: FakeProbe
) -> None:
    probe.outcome = ProbeFailed("Moodle rejected ... with 'invalidtoken'")
    response = client.post("/archive", json=v7_body())
    assert response.status_code == 400
    assert response.json() == {
        "error": 'Could not establish a connection to Moodle webservice API at '
        '"https://moodle.example/webservice/rest/server.php" using the provided wstoken.'
    }
    assert kube.archivejobs == {} and kube.secrets == {}


def test_unreachable_moodle_is_refused_with_the_reference_message(
    client: TestClient, kube: FakeKube, probe: FakeProbe
) -> None:
    probe.outcome = MoodleUnreachable("could not connect to Moodle")
    response = client.post("/archive/archivingmod_quiz", json=v1_body())
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Connection to Moodle webservice failed. Cannot process request. Aborting."},
    )
    assert kube.archivejobs == {}


def test_a_slow_moodle_is_bounded(
    make_client: Callable[..., TestClient], kube: FakeKube, probe: FakeProbe
) -> None:
    client = make_client(probe_timeout_sec=0.3)
    probe.delay = 3.0  # a probe that ignores its own timeout
    started = time.monotonic()
    response = client.post("/archive", json=v7_body())
    assert time.monotonic() - started < 2.0
    assert response.json()["error"].startswith("Connection to Moodle webservice failed.")
    assert kube.archivejobs == {}


def test_unexpected_probe_errors_count_as_a_failed_probe(
    client: TestClient, probe: FakeProbe
) -> None:
    probe.outcome = RuntimeError("boom")
    response = client.post("/archive", json=v7_body())
    assert response.status_code == 400
    assert response.json()["error"].startswith("Could not establish a connection")


def test_full_queue_answers_429_before_probing(
    make_client: Callable[..., TestClient], kube: FakeKube, probe: FakeProbe
) -> None:
    client = make_client(max_parallel_jobs=1, queue_size=1)
    kube.add_archivejob("archive-a", "Running")
    kube.add_archivejob("archive-b", "Queued")
    kube.add_archivejob("archive-c", "Succeeded")  # final jobs do not count
    response = client.post("/archive", json=v7_body())
    assert (response.status_code, response.json()) == (429, QUEUE_FULL)
    assert probe.calls == [] and len(kube.archivejobs) == 3
    assert response.headers["retry-after"]
    del kube.archivejobs["archive-b"]
    accepted_job_id(client.post("/archive", json=v7_body()))


def test_capacity_is_checked_again_after_creation(
    make_client: Callable[..., TestClient], kube: FakeKube, probe: FakeProbe
) -> None:
    """Another replica filled the queue while we probed: the count after create says back out."""
    client = make_client(max_parallel_jobs=1, queue_size=1)
    kube.before["create_archivejob"] = lambda: [
        kube.add_archivejob(name, None) for name in ("archive-0-other", "archive-1-other")
    ]
    response = client.post("/archive", json=v7_body())
    assert (response.status_code, response.json()) == (429, QUEUE_FULL)
    assert set(kube.archivejobs) == {"archive-0-other", "archive-1-other"}
    assert kube.secrets == {} and len(probe.calls) == 1


def test_secret_failure_leaves_nothing_behind(client: TestClient, kube: FakeKube) -> None:
    kube.fail["create_secret"] = KubeError(500, "Internal Server Error")
    response = client.post("/archive", json=v7_body())
    assert (response.status_code, response.json()) == (503, STORE_FAILED)
    assert kube.archivejobs == {} and kube.secrets == {} and kube.events == []
    assert kube.calls.count("delete_archivejob") == 1


def test_ambiguous_create_failure_is_rolled_back(client: TestClient, kube: FakeKube) -> None:
    kube.fail["create_archivejob"] = KubeError(None, "ReadTimeoutError")
    response = client.post("/archive", json=v7_body())
    assert (response.status_code, response.json()) == (503, STORE_FAILED)
    assert "delete_archivejob" in kube.calls and kube.archivejobs == {}


def test_api_server_refusing_the_object_is_a_400(client: TestClient, kube: FakeKube) -> None:
    kube.fail["create_archivejob"] = KubeError(422, "Unprocessable Entity")
    response = client.post("/archive", json=v7_body())
    assert (response.status_code, response.json()) == (400, {"error": "Invalid request."})


def test_unreachable_api_server_is_a_503(client: TestClient, kube: FakeKube, probe: FakeProbe):
    kube.fail["list_archivejobs"] = KubeError(None, "MaxRetryError")
    response = client.post("/archive", json=v7_body())
    assert (response.status_code, response.json()) == (503, STORE_FAILED)
    assert probe.calls == []


def test_event_failure_does_not_fail_the_task(
    make_client: Callable[..., TestClient], kube: FakeKube
) -> None:
    client = make_client(accepted_events=True)
    kube.fail["create_event"] = KubeError(403, "Forbidden")
    accepted_job_id(client.post("/archive", json=v7_body()))
    assert len(kube.secrets) == 1
