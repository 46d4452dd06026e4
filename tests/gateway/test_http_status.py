"""`/status`, `/status/{jobid}`, the secret prefix, ops endpoints, metrics and token hygiene."""

from __future__ import annotations

import io
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from moodle_archive_job.moodle_client import ProbeFailed
from moodle_archive_operator.gateway.kube import KubeError
from tests.gateway.conftest import FakeProbe
from tests.gateway.fakekube import FakeKube
from tests.unit.request_bodies import v1_body, v7_body


def _id() -> str:
    return str(uuid.uuid4())


def test_idle_worker(client: TestClient) -> None:
    assert client.get("/status").json() == {
        "status": "IDLE",
        "jobs_processing": [],
        "jobs_queued": [],
        "jobs_max": 4,
        "queue_max": 8,
    }


def test_status_is_computed_from_the_archivejobs(
    make_client: Callable[..., TestClient], kube: FakeKube
) -> None:
    client = make_client(max_parallel_jobs=2, queue_size=2)
    running, admitted, first, second = _id(), _id(), _id(), _id()
    kube.add_archivejob(f"archive-{running}", "Running")
    assert client.get("/status").json()["status"] == "ACTIVE"
    kube.add_archivejob(
        f"archive-{admitted}",
        "Queued",
        conditions=[{"type": "Admitted", "status": "True", "reason": "SlotFree"}],
    )
    kube.add_archivejob(f"archive-{first}", "Queued")["metadata"]["creationTimestamp"] = (
        "2026-01-01T00:00:00Z"
    )
    kube.add_archivejob(f"archive-{second}", None)["metadata"]["creationTimestamp"] = (
        "2026-01-01T00:00:01Z"
    )
    kube.add_archivejob(f"archive-{_id()}", "Succeeded")
    kube.add_archivejob(f"archive-{_id()}", "TimedOut")
    status = client.get("/status").json()
    assert status["jobs_processing"] == [running, admitted] or set(status["jobs_processing"]) == {
        running,
        admitted,
    }
    assert status["jobs_queued"] == [first, second]
    assert (status["status"], status["jobs_max"], status["queue_max"]) == ("UNAVAILABLE", 2, 2)
    del kube.archivejobs[f"archive-{second}"]
    assert client.get("/status").json()["status"] == "BUSY"


def test_status_without_the_api_server(client: TestClient, kube: FakeKube) -> None:
    kube.fail["list_archivejobs"] = KubeError(None, "MaxRetryError")
    response = client.get("/status")
    assert response.status_code == 503 and response.headers["retry-after"] == "10"
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (None, "AWAITING_PROCESSING"),
        ("Pending", "AWAITING_PROCESSING"),
        ("Queued", "AWAITING_PROCESSING"),
        ("Running", "RUNNING"),
        ("WaitingForBackup", "WAITING_FOR_BACKUP"),
        ("Finalizing", "FINALIZING"),
        ("Succeeded", "FINISHED"),
        ("Failed", "FAILED"),
        ("TimedOut", "TIMEOUT"),
        ("Cancelled", "CANCELED"),
        ("SomethingNew", "UNKNOWN"),
    ],
)
def test_job_status_maps_the_phase(
    client: TestClient, kube: FakeKube, phase: str | None, status: str
) -> None:
    job_id = _id()
    kube.add_archivejob(f"archive-{job_id}", phase)
    assert client.get(f"/status/{job_id}").json() == {"id": job_id, "status": status}
    assert client.get(f"/status/{job_id.upper()}").json()["status"] == status


@pytest.mark.parametrize("jobid", [str(uuid.uuid4()), "nope", "archive-x", "%00", "1" * 300])
def test_unknown_job_is_404_with_the_reference_message(client: TestClient, jobid: str) -> None:
    response = client.get(f"/status/{jobid}")
    assert response.status_code == 404
    assert response.json() == {
        "error": f"Job with requested jobid '{jobid.replace('%00', chr(0))}' was not found"
    }


def test_an_accepted_job_can_be_looked_up(client: TestClient) -> None:
    job_id = client.post("/archive", json=v7_body()).json()["jobid"]
    assert client.get(f"/status/{job_id}").json() == {"id": job_id, "status": "AWAITING_PROCESSING"}
    assert client.get("/status").json()["jobs_queued"] == [job_id]


def test_secret_prefix(make_client: Callable[..., TestClient], kube: FakeKube) -> None:
    client = make_client(path_prefix="/s3cr3t-Pr3fix/")
    assert client.post("/s3cr3t-Pr3fix/archive", json=v7_body()).status_code == 200
    response = client.post("/s3cr3t-Pr3fix/archive/archivingmod_quiz", json=v1_body())
    assert response.status_code == 200
    for path in ("/archive", "/archive/archivingmod_quiz", "/archive/quiz_archiver"):
        response = client.post(path, json=v7_body())
        assert (response.status_code, response.json()) == (404, {"error": "Not Found"})
    for path in ("/", "/status", "/version", "/openapi.json"):
        assert client.get(path).status_code == 404
        assert client.get("/s3cr3t-Pr3fix" + path).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert len(kube.archivejobs) == 2


def test_info_endpoints(client: TestClient) -> None:
    info = client.get("/").json()
    assert info["app"] == "moodle-archive-operator" and info["version"]
    assert client.get("/version").json() == {"version": info["version"]}
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_not_ready_without_the_api_server(client: TestClient, kube: FakeKube) -> None:
    kube.fail["list_archivejobs"] = KubeError(None, "MaxRetryError")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_openapi_documents_every_route_and_both_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        "/archive",
        "/archive/quiz_archiver",
        "/archive/archivingmod_quiz",
        "/",
        "/version",
        "/status",
        "/status/{jobid}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    body = schema["paths"]["/archive/archivingmod_quiz"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ArchivingmodQuizV1Request"
    components = schema["components"]["schemas"]
    assert "wstoken" in components["QuizArchiverV7Request"]["properties"]
    assert "MoodleApiDoc" in components
    assert "422" not in json.dumps(schema["paths"])


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_accepted_and_rejected_tasks(
    client: TestClient, kube: FakeKube, probe: FakeProbe
) -> None:
    client.post("/archive", json=v7_body())
    client.post("/archive/archivingmod_quiz", json=v1_body())
    client.post("/archive", content=b"x", headers={"content-type": "text/plain"})
    client.post("/archive", json=v7_body(moodle_base_url="https://evil.example"))
    probe.outcome = ProbeFailed("no")
    client.post("/archive", json=v7_body())
    text = client.get("/metrics").text
    accepted = "moodle_archiver_gateway_tasks_accepted_total"
    rejected = "moodle_archiver_gateway_tasks_rejected_total"
    assert _metric(text, accepted, protocol="quiz_archiver/v7") == 1
    assert _metric(text, accepted, protocol="archivingmod_quiz/v1") == 1
    assert _metric(text, rejected, protocol="quiz_archiver/v7", reason="not_json") == 1
    assert _metric(text, rejected, reason="invalid") == 1
    assert _metric(text, rejected, reason="probe_failed") == 1
    histogram = "moodle_archiver_gateway_archive_request_duration_seconds_count"
    assert _metric(text, histogram, protocol="quiz_archiver/v7", outcome="rejected") == 3


def test_tokens_never_leave_the_secret(
    make_client: Callable[..., TestClient], kube: FakeKube, probe: FakeProbe, raw_logs: io.StringIO
) -> None:
    """Accepted, refused and failing tasks: no ArchiveJob, Event, log line or metric has a token."""
    client = make_client(path_prefix="p", accepted_events=True)
    tokens = [secrets.token_hex(16) for _ in range(6)]

    def v7(token: str, **overrides: Any) -> dict[str, Any]:
        return v7_body(wstoken=token, **overrides)

    def v1(token: str) -> dict[str, Any]:
        body = v1_body()
        body["moodle_api"]["wstoken"] = token
        return body

    assert client.post("/p/archive", json=v7(tokens[0])).status_code == 200
    assert client.post("/p/archive/archivingmod_quiz", json=v1(tokens[1])).status_code == 200
    assert client.post("/p/archive", json=v7(tokens[2], courseid=-1)).status_code == 400
    assert client.post("/p/archive", json=v7(tokens[3], api_version=6)).status_code == 400
    probe.outcome = ProbeFailed(f"Moodle said the token {tokens[4]} is invalid")
    assert client.post("/p/archive", json=v7(tokens[4])).status_code == 400
    probe.outcome = None
    kube.fail["create_secret"] = KubeError(500, "boom")
    assert client.post("/p/archive", json=v7(tokens[5])).status_code == 503

    exposed = json.dumps([kube.archivejobs, kube.events]) + raw_logs.getvalue()
    exposed += client.get("/metrics").text + client.get("/p/status").text
    for token in tokens:
        assert token not in exposed
    # The token is only in the Secrets (of the accepted tasks).
    stored = json.dumps(kube.secrets)
    assert tokens[0] in stored and tokens[1] in stored and tokens[5] not in stored
