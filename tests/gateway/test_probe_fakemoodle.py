"""The gateway with the real connection probe against the strict fake Moodle.

The API server is in memory here; tests/gateway/test_cluster.py repeats the essentials
against the real control plane.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from moodle_archive_job.moodle_client import ProbeFailed
from moodle_archive_job.request_parsing import parse_archive_request
from moodle_archive_job.task import Protocol
from moodle_archive_operator.archivejob import ArchiveJobSpec, task_from_spec
from moodle_archive_operator.gateway import create_app
from moodle_archive_operator.gateway.prober import SessionProber
from tests.fakemoodle import FakeMoodle
from tests.gateway.conftest import settings
from tests.gateway.fakekube import FakeKube

PROTOCOLS = {
    "quiz_archiver": Protocol.QUIZ_ARCHIVER_V7,
    "archivingmod_quiz": Protocol.ARCHIVINGMOD_QUIZ_V1,
}
PROBE_FUNCTIONS = {
    "quiz_archiver": "quiz_archiver_update_job_status",
    "archivingmod_quiz": "archivingmod_quiz_update_task_status",
}


@pytest.fixture(scope="module")
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


@pytest.fixture
def gateway(moodle: FakeMoodle, kube: FakeKube) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        app = create_app(settings(allowed_moodle_urls=moodle.base_url, **overrides), kube_api=kube)
        client = TestClient(app, raise_server_exceptions=False).__enter__()
        clients.append(client)
        return client

    yield make
    moodle.faults.clear()
    for client in clients:
        client.__exit__(None, None, None)


def _with_token(body: dict[str, Any], token: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    if "moodle_api" in body:
        body["moodle_api"]["wstoken"] = token
    else:
        body["wstoken"] = token
    return body


@pytest.mark.parametrize("protocol", ["quiz_archiver", "archivingmod_quiz"])
def test_plugin_bodies_are_accepted_after_a_real_probe(
    moodle: FakeMoodle, gateway: Callable[..., TestClient], kube: FakeKube, protocol: str
) -> None:
    quiz = moodle.create_quiz(attempts=3)
    job = moodle.create_job(quiz, protocol=protocol)
    moodle.clear_calls()
    response = gateway().post(job.endpoint_path, json=job.request_body)
    assert response.status_code == 200, response.text
    job_id = response.json()["jobid"]
    spec = ArchiveJobSpec.model_validate(kube.archivejobs[f"archive-{job_id}"]["spec"])
    expected = parse_archive_request(job.request_body, PROTOCOLS[protocol]).task
    assert task_from_spec(spec) == expected
    assert kube.secrets[spec.token_secret_name]["stringData"]["token"] == job.token
    (call,) = moodle.ws_calls()
    assert call.wsfunction == PROBE_FUNCTIONS[protocol] and call.errorcode == "invalidparameter"


def test_wrong_token(moodle: FakeMoodle, gateway: Callable[..., TestClient], kube: FakeKube):
    job = moodle.create_job(moodle.create_quiz(attempts=1), protocol="quiz_archiver")
    body = _with_token(job.request_body, "f" * 32)
    response = gateway().post(job.endpoint_path, json=body)
    assert (response.status_code, response.json()) == (
        400,
        {
            "error": "Could not establish a connection to Moodle webservice API at "
            f'"{moodle.base_url}/webservice/rest/server.php" using the provided wstoken.'
        },
    )
    assert kube.archivejobs == {}


def test_moodle_down(moodle: FakeMoodle, gateway: Callable[..., TestClient], kube: FakeKube):
    job = moodle.create_job(moodle.create_quiz(attempts=1), protocol="archivingmod_quiz")
    client = gateway()
    moodle.faults.down("refuse")
    try:
        response = client.post(job.endpoint_path, json=job.request_body)
    finally:
        moodle.faults.up()
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Connection to Moodle webservice failed. Cannot process request. Aborting."},
    )
    assert kube.archivejobs == {}


def test_hanging_moodle_is_bounded(
    moodle: FakeMoodle, gateway: Callable[..., TestClient], kube: FakeKube
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1), protocol="quiz_archiver")
    client = gateway(probe_timeout_sec=1.0)
    moodle.faults.set_latency("rest", 30.0)
    started = time.monotonic()
    response = client.post(job.endpoint_path, json=job.request_body)
    elapsed = time.monotonic() - started
    moodle.faults.clear()
    assert response.status_code == 400 and elapsed < 5.0
    assert response.json()["error"].startswith("Connection to Moodle webservice failed.")
    assert kube.archivejobs == {}


def test_a_slow_but_answering_moodle_is_fine(
    moodle: FakeMoodle, gateway: Callable[..., TestClient]
) -> None:
    job = moodle.create_job(moodle.create_quiz(attempts=1), protocol="quiz_archiver")
    moodle.faults.set_latency("rest", 0.5)
    assert gateway().post(job.endpoint_path, json=job.request_body).status_code == 200


def test_probes_reuse_a_session_and_leave_nothing_in_it(moodle: FakeMoodle) -> None:
    prober = SessionProber(idle_sec=30)
    first, second = (moodle.create_job(moodle.create_quiz(attempts=1)) for _ in range(2))
    for job in (first, second):
        task = parse_archive_request(job.request_body, PROTOCOLS["quiz_archiver"]).task
        prober(task, job.token, 5.0)
    session = prober.session()
    assert session is prober.session() and not session.cookies
    wrong = parse_archive_request(first.request_body, PROTOCOLS["quiz_archiver"]).task
    with pytest.raises(ProbeFailed):
        prober(wrong, "0" * 32, 5.0)
    prober.idle_sec = 0.0
    time.sleep(0.01)
    assert prober.session() is not session  # an idle session is not trusted any more
