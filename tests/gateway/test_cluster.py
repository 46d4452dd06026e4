"""The real gateway process against the real control plane and the strict fake Moodle.

The fake Moodle plays the plugins' enqueue call (`submit_job`), the gateway runs as
`python -m moodle_archive_operator.gateway`, ArchiveJobs and Secrets land in a real
API server. The last test searches every ArchiveJob, Event, log line and the
`/metrics` output of this module for the tokens used, and must find none.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

from moodle_archive_job.request_parsing import parse_archive_request
from moodle_archive_job.task import Protocol
from moodle_archive_operator.archivejob import ArchiveJobSpec, task_from_spec
from tests.fakemoodle import FakeMoodle, Job
from tests.gateway.crd import install_archivejob_crd
from tests.gateway.server import GatewayProcess
from tests.support.cluster_fixtures import eventually
from tests.support.localcluster import LocalCluster

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "moodlearchiver.io", "v1alpha1", "archivejobs"
PROTOCOLS = {
    "quiz_archiver": Protocol.QUIZ_ARCHIVER_V7,
    "archivingmod_quiz": Protocol.ARCHIVINGMOD_QUIZ_V1,
}
# Every token handed to a gateway in this module; none may appear outside its Secret.
TOKENS: list[str] = []
GATEWAY_LOGS: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def archivejob_crd(api_client: client.ApiClient) -> None:
    install_archivejob_crd(api_client)


@pytest.fixture(scope="module")
def jobs_namespace(api_client: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = f"gateway-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


def start_gateway(
    cluster: LocalCluster, namespace: str, moodle: FakeMoodle, tmp: Path, **env: str
) -> GatewayProcess:
    log = tmp / f"gateway-{len(GATEWAY_LOGS)}.log"
    GATEWAY_LOGS.append(log)
    return GatewayProcess(cluster.kubeconfig, namespace, moodle.base_url, log, **env).start()


@pytest.fixture(scope="module")
def gateway(
    cluster: LocalCluster,
    jobs_namespace: str,
    moodle: FakeMoodle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    process = start_gateway(
        cluster, jobs_namespace, moodle, tmp_path_factory.mktemp("gw"),
        MAO_QUEUE_SIZE="100", MAO_ACCEPTED_EVENTS="true",
    )
    yield process
    process.stop()


def new_job(moodle: FakeMoodle, protocol: str = "quiz_archiver", **options: Any) -> Job:
    job = moodle.create_job(moodle.create_quiz(attempts=3), protocol=protocol, **options)
    TOKENS.append(job.token)
    return job


def get_archivejob(api: client.ApiClient, namespace: str, job_id: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, f"archive-{job_id}"
    )


def list_archivejobs(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )["items"]
    return list(items)


def watched_rechecks(gateway: GatewayProcess) -> float:
    metrics = requests.get(f"{gateway.url}/metrics", timeout=5).text
    name = 'moodle_archiver_gateway_capacity_rechecks_total{source="watch"}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))


@pytest.mark.parametrize("protocol", ["quiz_archiver", "archivingmod_quiz"])
def test_plugin_requests_become_archivejobs_with_token_secrets(
    api_client: client.ApiClient,
    jobs_namespace: str,
    moodle: FakeMoodle,
    gateway: GatewayProcess,
    protocol: str,
) -> None:
    backups = ("quiz", "course") if protocol == "quiz_archiver" else ()
    job = new_job(moodle, protocol, backups=backups)
    result = moodle.submit_job(job, gateway.url)
    assert result.ok, result.message
    job_id = result.data["jobid"]
    assert result.data == {"jobid": job_id, "status": "AWAITING_PROCESSING"}

    obj = get_archivejob(api_client, jobs_namespace, job_id)
    assert obj["metadata"]["labels"]["moodlearchiver.io/job-id"] == job_id
    spec = ArchiveJobSpec.model_validate(obj["spec"])
    assert task_from_spec(spec) == parse_archive_request(job.request_body, PROTOCOLS[protocol]).task
    assert spec.timeout_seconds == 3600 and spec.cancel_requested is False

    secret = client.CoreV1Api(api_client).read_namespaced_secret(
        spec.token_secret_name, jobs_namespace
    )
    assert secret.type == "Opaque" and secret.immutable is True
    assert base64.b64decode(secret.data["token"]).decode() == job.token
    # Named by label and annotation, not owned: it outlives a deleted ArchiveJob (until the
    # operator has told Moodle).
    assert not secret.metadata.owner_references
    assert secret.metadata.labels["moodlearchiver.io/archivejob-uid"] == obj["metadata"]["uid"]
    assert secret.metadata.annotations["moodlearchiver.io/archivejob"] == obj["metadata"]["name"]
    status = requests.get(f"{gateway.url}/status/{job_id}", timeout=5).json()
    assert status == {"id": job_id, "status": "AWAITING_PROCESSING"}
    assert job_id in requests.get(f"{gateway.url}/status", timeout=5).json()["jobs_queued"]


def test_accepted_event_is_recorded(
    api_client: client.ApiClient, jobs_namespace: str, moodle: FakeMoodle, gateway: GatewayProcess
) -> None:
    result = moodle.submit_job(new_job(moodle), gateway.url)
    name = f"archive-{result.data['jobid']}"
    core = client.CoreV1Api(api_client)
    events = eventually(
        lambda: core.list_namespaced_event(
            jobs_namespace, field_selector=f"involvedObject.name={name}"
        ).items,
        timeout=10,
        what="the Accepted event",
    )
    assert [e.reason for e in events] == ["Accepted"]
    assert events[0].involved_object.kind == "ArchiveJob"


def test_status_follows_the_status_subresource(
    api_client: client.ApiClient, jobs_namespace: str, moodle: FakeMoodle, gateway: GatewayProcess
) -> None:
    job_id = moodle.submit_job(new_job(moodle), gateway.url).data["jobid"]
    custom = client.CustomObjectsApi(api_client)
    for phase, expected in (("Running", "RUNNING"), ("TimedOut", "TIMEOUT")):
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, jobs_namespace, PLURAL, f"archive-{job_id}",
            {"status": {"phase": phase, "progress": 40}},
        )
        answer = requests.get(f"{gateway.url}/status/{job_id}", timeout=5).json()
        assert answer == {"id": job_id, "status": expected}
        status = requests.get(f"{gateway.url}/status", timeout=5).json()
        assert (job_id in status["jobs_processing"]) is (phase == "Running")


def test_kubectl_shows_the_printer_columns(
    jobs_namespace: str, moodle: FakeMoodle, gateway: GatewayProcess, cluster: LocalCluster
) -> None:
    moodle.submit_job(new_job(moodle), gateway.url)
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "aj", "-n", jobs_namespace],
        check=True, capture_output=True, text=True,
    ).stdout
    assert out.split("\n", 1)[0].split() == [
        "NAME", "PHASE", "PROGRESS", "REASON", "QUIZ", "ATTEMPTS", "AGE"
    ]


def test_the_crd_guards_the_spec(
    api_client: client.ApiClient, jobs_namespace: str, moodle: FakeMoodle, gateway: GatewayProcess
) -> None:
    job_id = moodle.submit_job(new_job(moodle), gateway.url).data["jobid"]
    custom = client.CustomObjectsApi(api_client)
    name = f"archive-{job_id}"

    def patch(spec: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, jobs_namespace, PLURAL, name, {"spec": spec}
        )

    patch({"cancelRequested": True})
    for change in ({"cancelRequested": False}, {"jobId": str(uuid.uuid4())},
                   {"moodle": {"baseUrl": "https://evil.example", "wsUrl": "x", "uploadUrl": "y"}}):
        with pytest.raises(ApiException) as info:
            patch(change)
        assert info.value.status == 422
    patch({"token": "should-be-pruned"})
    assert "token" not in get_archivejob(api_client, jobs_namespace, job_id)["spec"]


def test_refused_tasks_create_nothing(
    api_client: client.ApiClient, jobs_namespace: str, moodle: FakeMoodle, gateway: GatewayProcess
) -> None:
    before = {o["metadata"]["name"] for o in list_archivejobs(api_client, jobs_namespace)}
    secrets_before = len(client.CoreV1Api(api_client).list_namespaced_secret(jobs_namespace).items)

    wrong = new_job(moodle)
    body = dict(wrong.request_body, wstoken="0" * 32)
    TOKENS.append("0" * 32)
    response = requests.post(f"{gateway.url}/archive", json=body, timeout=20)
    assert (response.status_code, response.json()["error"]) == (
        400,
        "Could not establish a connection to Moodle webservice API at "
        f'"{moodle.base_url}/webservice/rest/server.php" using the provided wstoken.',
    )
    hostile = new_job(moodle)
    for override, status in (
        ({"moodle_base_url": "https://other.example"}, 400),
        ({"archive_filename": "../x"}, 400),
        ({"api_version": 8}, 400),
    ):
        response = requests.post(
            f"{gateway.url}/archive", json=dict(hostile.request_body, **override), timeout=20
        )
        assert response.status_code == status and response.json()["error"]
    big = requests.post(
        f"{gateway.url}/archive", data=b"{" + b" " * 10_000_000 + b"}",
        headers={"content-type": "application/json"}, timeout=30,
    )
    assert big.status_code == 413 and big.json()["error"]

    down = new_job(moodle, "archivingmod_quiz")
    moodle.faults.down("refuse")
    try:
        result = moodle.submit_job(down, gateway.url)
    finally:
        moodle.faults.up()
    assert result.data == {
        "error": "Connection to Moodle webservice failed. Cannot process request. Aborting."
    }
    after = {o["metadata"]["name"] for o in list_archivejobs(api_client, jobs_namespace)}
    assert after == before
    secrets_after = client.CoreV1Api(api_client).list_namespaced_secret(jobs_namespace).items
    assert len(secrets_after) == secrets_before


def test_capacity_with_real_archivejobs(
    api_client: client.ApiClient,
    cluster: LocalCluster,
    moodle: FakeMoodle,
    tmp_path: Path,
) -> None:
    namespace = f"gateway-cap-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        with start_gateway(
            cluster, namespace, moodle, tmp_path,
            QUIZ_ARCHIVER_PARALLEL_JOBS="1", QUIZ_ARCHIVER_QUEUE_SIZE="1",
        ) as gw:
            ids = [moodle.submit_job(new_job(moodle), gw.url).data["jobid"] for _ in range(2)]
            refused = moodle.submit_job(new_job(moodle), gw.url)
            assert (refused.http_status, refused.data) == (
                429, {"error": "Maximum number of queued jobs exceeded."}
            )
            status = requests.get(f"{gw.url}/status", timeout=5).json()
            assert status == {
                "status": "UNAVAILABLE", "jobs_processing": [], "jobs_queued": ids,
                "jobs_max": 1, "queue_max": 1,
            }
            assert len(list_archivejobs(api_client, namespace)) == 2
            client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, f"archive-{ids[0]}",
                {"status": {"phase": "Succeeded"}},
            )
            assert moodle.submit_job(new_job(moodle), gw.url).ok
            # The re-checks counted from the gateway's watched copy, not from lists.
            assert watched_rechecks(gw) >= 1
    finally:
        core.delete_namespace(namespace)


def test_two_replicas_racing_never_exceed_capacity(
    api_client: client.ApiClient,
    cluster: LocalCluster,
    moodle: FakeMoodle,
    tmp_path: Path,
) -> None:
    """No in-process state: two gateways share the queue, and the re-check after create holds."""
    namespace = f"gateway-race-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    capacity = {"QUIZ_ARCHIVER_PARALLEL_JOBS": "1", "QUIZ_ARCHIVER_QUEUE_SIZE": "2"}
    try:
        with start_gateway(cluster, namespace, moodle, tmp_path, **capacity) as one, \
                start_gateway(cluster, namespace, moodle, tmp_path, **capacity) as two:
            jobs = [new_job(moodle) for _ in range(10)]
            urls = [one.url, two.url] * 5
            with ThreadPoolExecutor(10) as pool:
                results = list(pool.map(moodle.submit_job, jobs, urls))
            statuses = sorted(r.http_status or 0 for r in results)
            accepted = {r.data["jobid"] for r in results if r.ok}
            # Never over capacity; racers for the last slots may all be told to retry.
            assert set(statuses) <= {200, 429} and len(accepted) <= 3, statuses
            if len(accepted) < 3:  # a lone request afterwards gets a free slot
                late = moodle.submit_job(new_job(moodle), one.url)
                assert late.ok, late.message
                accepted.add(late.data["jobid"])
            names = {o["metadata"]["name"] for o in list_archivejobs(api_client, namespace)}
            assert names == {f"archive-{job_id}" for job_id in accepted}
            secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
            assert {f"{name}-token" for name in names} <= secrets
            assert watched_rechecks(one) + watched_rechecks(two) >= 1
            assert not {s for s in secrets if s.startswith("archive-")} - {
                f"{name}-token" for name in names
            }
    finally:
        core.delete_namespace(namespace)


def test_tokens_appear_nowhere_but_in_their_secrets(
    api_client: client.ApiClient, gateway: GatewayProcess
) -> None:
    """Run last: every ArchiveJob, Event, log line and metric of this module, searched."""
    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    exposed = [
        json.dumps(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)),
        json.dumps(api_client.sanitize_for_serialization(core.list_event_for_all_namespaces())),
        requests.get(f"{gateway.url}/metrics", timeout=5).text,
        requests.get(f"{gateway.url}/status", timeout=5).text,
        *(path.read_text(errors="replace") for path in GATEWAY_LOGS if path.exists()),
    ]
    if len(TOKENS) < 8:
        pytest.skip("searches what the whole module produced: run the module, not one test")
    assert all(len(t) >= 32 for t in TOKENS)
    assert any('"archive task accepted"' in text for text in exposed)  # the logs were read
    for token in TOKENS:
        for text in exposed:
            assert token not in text
