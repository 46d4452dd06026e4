"""Fixtures for the operator's cluster tests: a jobs namespace with the CRD, the fake Moodle,
the operator process, and ArchiveJobs created exactly as the gateway creates them."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_operator.archivejob import (
    GROUP,
    PLURAL,
    VERSION,
    build_archivejob,
    build_token_secret,
    new_job_id,
    spec_from_task,
)
from tests.fakemoodle import FakeMoodle, Job
from tests.gateway.crd import install_archivejob_crd
from tests.operator.operator_process import OperatorProcess
from tests.operator.podplayer import PodPlayer
from tests.support.cluster_fixtures import eventually
from tests.support.kubeapi import read_or_none
from tests.support.localcluster import LocalCluster

KWOK = "kwok.moodlearchiver.io"
RUN_FOREVER = {f"{KWOK}/outcome": "run-forever"}
FINAL = ("Succeeded", "Failed", "TimedOut", "Cancelled")


@pytest.fixture(scope="session")
def fake_moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as moodle:
        yield moodle


class Harness:
    """One test's jobs namespace, with helpers; stops what it started."""

    def __init__(
        self,
        api: client.ApiClient,
        cluster: LocalCluster,
        namespace: str,
        moodle: FakeMoodle,
        tmp: Path,
    ) -> None:
        self.api, self.cluster, self.namespace, self.moodle, self.tmp = (
            api, cluster, namespace, moodle, tmp,
        )  # fmt: skip
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.operators: list[OperatorProcess] = []
        self.players: list[PodPlayer] = []
        self.tokens: list[str] = []
        self._cleanup: list[Path] = []

    # --- processes -----------------------------------------------------------------------------

    def operator(self, **env: Any) -> OperatorProcess:
        log = self.tmp / f"operator-{len(self.operators)}.log"
        proc = OperatorProcess(self.cluster.kubeconfig, self.namespace, log, **env)
        self.operators.append(proc)
        return proc.start()

    def operator_logs(self) -> str:
        return "".join(op.logs() for op in self.operators)

    def play(self, name: str, timeout: float = 60) -> PodPlayer:
        pod = self.wait_running_pod(name, timeout)
        # Short paths, as in a pod: Chromium's socket path in TMPDIR must fit in 108 bytes.
        root = Path(tempfile.mkdtemp(prefix="pod-"))
        self._cleanup.append(root)
        player = PodPlayer(self.api, self.cluster, pod, root).start()
        self.players.append(player)
        return player

    def close(self) -> None:
        for player in self.players:
            player.stop()
        for op in self.operators:
            op.stop()
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)

    # --- ArchiveJobs ---------------------------------------------------------------------------

    def fake_job(self, attempts: int = 3, protocol: str = "quiz_archiver", **options: Any) -> Job:
        quiz = self.moodle.create_quiz(attempts=attempts)
        return self.moodle.create_job(quiz, protocol=protocol, **options)

    def submit(
        self,
        moodle_job: Job | None = None,
        timeout: int = 600,
        register: bool = True,
        with_secret: bool = True,
        base_url: str | None = None,
    ) -> tuple[dict[str, Any], Job]:
        """Create the ArchiveJob and its token Secret as the gateway does, then let Moodle
        register the job id (as after the worker's 200 answer). `base_url`: another Moodle
        site in the spec (for jobs no runner runs)."""
        moodle_job = moodle_job or self.fake_job()
        body = moodle_job.request_body
        parsed = parse_archive_request(body, detect_protocol(body))
        self.tokens.append(parsed.token.get_secret_value())
        job_id = new_job_id()
        manifest = build_archivejob(spec_from_task(parsed.task, job_id, timeout), self.namespace)
        if base_url:
            manifest["spec"]["moodle"]["baseUrl"] = base_url
        created = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest
        )
        if with_secret:
            self.core.create_namespaced_secret(
                self.namespace, build_token_secret(created, parsed.token, self.namespace)
            )
        if register:
            self.moodle.register_job(moodle_job, job_id)
        return created, moodle_job

    def archivejob(self, name: str) -> dict[str, Any] | None:
        return read_or_none(lambda: self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        ))  # fmt: skip

    def archivejobs(self) -> list[dict[str, Any]]:
        result = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return result["items"]

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def wait_phase(
        self, name: str, phases: tuple[str, ...] = FINAL, timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            aj = self.archivejob(name)
            phase = (aj or {}).get("status", {}).get("phase")
            return aj if phase in phases else None

        try:
            return eventually(probe, timeout=timeout, what=f"{name} to reach {phases}")
        except BaseException:
            print(self.operator_logs()[-6000:])
            raise

    def condition(self, aj: dict[str, Any], type_: str) -> dict[str, Any]:
        return next(c for c in aj["status"]["conditions"] if c["type"] == type_)

    # --- children ------------------------------------------------------------------------------

    def pods(self, name: str) -> list[client.V1Pod]:
        selector = f"batch.kubernetes.io/job-name={name}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def wait_running_pod(self, name: str, timeout: float = 60) -> dict[str, Any]:
        def probe() -> client.V1Pod | None:
            return next(
                (p for p in self.pods(name) if p.status.phase == "Running"
                 and not p.metadata.deletion_timestamp),
                None,
            )  # fmt: skip

        pod = eventually(probe, timeout=timeout, what=f"a running pod of {name}")
        return self.api.sanitize_for_serialization(pod)

    def job(self, name: str) -> client.V1Job | None:
        return read_or_none(lambda: self.batch.read_namespaced_job(name, self.namespace))

    def secret_exists(self, name: str) -> bool:
        secret = read_or_none(lambda: self.core.read_namespaced_secret(name, self.namespace))
        return secret is not None

    def events(self, name: str) -> list[client.CoreV1Event]:
        selector = f"involvedObject.name={name},involvedObject.kind=ArchiveJob"
        items = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        return sorted(items, key=lambda e: (e.first_timestamp or e.event_time, e.metadata.name))

    def wait_gone(self, kind: str, name: str, timeout: float = 30) -> None:
        readers = {
            "Job": lambda: self.batch.read_namespaced_job(name, self.namespace),
            "Secret": lambda: self.core.read_namespaced_secret(name, self.namespace),
        }

        def gone() -> bool:
            return read_or_none(readers[kind]) is None

        eventually(gone, timeout=timeout, what=f"{kind} {name} to be gone")


@pytest.fixture(scope="session")
def crd(api_client: client.ApiClient) -> None:
    install_archivejob_crd(api_client)


@pytest.fixture
def harness(
    api_client: client.ApiClient,
    cluster: LocalCluster,
    namespace: str,
    crd: None,
    fake_moodle: FakeMoodle,
    tmp_path: Path,
) -> Iterator[Harness]:
    core = client.CoreV1Api(api_client)
    # The jobs namespace enforces the restricted Pod Security Standard: a job pod that
    # violated it would never be created.
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}})  # fmt: skip
    h = Harness(api_client, cluster, namespace, fake_moodle, tmp_path)
    try:
        yield h
    finally:
        h.close()
        time.sleep(0)
