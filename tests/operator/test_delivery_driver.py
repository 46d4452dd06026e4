"""The delivery duty carried out: the reconciler's `settle` and the orphaned-token handler, with
an in-memory API server and the strict fake Moodle (its token rules decide what happens)."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from moodle_archive_job.final_status import PendingArtifact
from moodle_archive_job.moodle_client import UploadedFile
from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_operator.archivejob import (
    ANNOTATION_DELIVERY_STATE,
    build_archivejob,
    build_token_secret,
    new_job_id,
    spec_from_task,
)
from moodle_archive_operator.controller.conditions import find
from moodle_archive_operator.controller.delivery import Backoff
from moodle_archive_operator.controller.kube import KubeError
from moodle_archive_operator.controller.metrics import OperatorMetrics
from moodle_archive_operator.controller.orphans import OrphanedTokens
from moodle_archive_operator.controller.reconciler import Reconciler
from moodle_archive_operator.controller.settings import OperatorSettings
from moodle_archive_operator.controller.workqueue import WorkQueue
from tests.fakemoodle import FakeMoodle, Job
from tests.fakemoodle.testing import WsClient


class MemoryKube:
    """The few calls the reconciler's final path and the orphan handler make."""

    namespace = "jobs"

    def __init__(self) -> None:
        self.archivejobs: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        store = self.archivejobs if kind == "ArchiveJob" else self.secrets
        return copy.deepcopy(store.get(name))

    async def get_metadata(self, kind: str, name: str) -> dict[str, Any] | None:
        obj = await self.get(kind, name)
        return None if obj is None else {"metadata": obj["metadata"]}

    async def patch_status(self, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        aj = self.archivejobs.get(name)
        if aj is None:
            return None
        current = aj.setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = copy.deepcopy(value)
        return copy.deepcopy(aj)

    async def patch_labels(self, kind: str, name: str, labels: dict[str, str | None]) -> None:
        if name in self.archivejobs:
            self.archivejobs[name]["metadata"].setdefault("labels", {}).update(labels)

    async def patch_annotations(
        self, kind: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        assert kind == "Secret"
        if name in self.secrets:
            self.secrets[name]["metadata"].setdefault("annotations", {}).update(annotations)

    async def delete(self, kind: str, name: str, propagation: str = "Background") -> bool:
        store = self.archivejobs if kind == "ArchiveJob" else self.secrets
        return store.pop(name, None) is not None

    async def read_token(self, name: str) -> str | None:
        secret = self.secrets.get(name)
        return None if secret is None else base64.b64decode(secret["data"]["token"]).decode()

    async def create_event(self, body: dict[str, Any]) -> None:
        self.events.append(body)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _moodle_up(moodle: FakeMoodle) -> Iterator[None]:
    yield
    moodle.faults.clear()


class World:
    def __init__(self, moodle: FakeMoodle) -> None:
        self.moodle = moodle
        self.kube = MemoryKube()
        self.clock = Clock()
        self.queue = WorkQueue()
        self.settings = OperatorSettings(moodle_notify_timeout_sec=5)
        self.metrics = OperatorMetrics()
        self.reconciler = Reconciler(
            self.kube, self.settings, self.metrics, self.queue, lambda: None, self.clock  # type: ignore[arg-type]
        )
        self.orphans = self.operator()

    def operator(self) -> OrphanedTokens:
        """The orphan handler of an operator process (a new one: a restart)."""
        return OrphanedTokens(
            self.kube, self.settings, self.metrics, self.reconciler.post_events,  # type: ignore[arg-type]
            Backoff(), self.clock,
        )  # fmt: skip

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def submit(
        self, timeout: int = 3600, register: bool = True, **status: Any
    ) -> tuple[dict[str, Any], Job]:
        """An ArchiveJob and its token Secret as the gateway makes them, Moodle's row made."""
        moodle_job = self.moodle.create_job(self.moodle.create_quiz(attempts=1))
        parsed = parse_archive_request(
            moodle_job.request_body, detect_protocol(moodle_job.request_body)
        )
        job_id = new_job_id()
        aj = build_archivejob(spec_from_task(parsed.task, job_id, timeout), "jobs")
        created = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        aj["metadata"].update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=created)
        aj["status"] = {"conditions": [], **status}
        secret = build_token_secret(aj, parsed.token, "jobs")
        secret["data"] = {
            "token": base64.b64encode(secret.pop("stringData")["token"].encode()).decode()
        }
        secret["metadata"]["creationTimestamp"] = aj["metadata"]["creationTimestamp"]
        self.kube.archivejobs[aj["metadata"]["name"]] = aj
        self.kube.secrets[aj["spec"]["tokenSecretName"]] = secret
        if register:
            self.moodle.register_job(moodle_job, job_id)
        return aj, moodle_job

    def orphan(self, aj: dict[str, Any]) -> dict[str, Any]:
        """Delete the ArchiveJob; its token Secret's metadata, as housekeeping lists it."""
        del self.kube.archivejobs[aj["metadata"]["name"]]
        return {"metadata": self.kube.secrets[aj["spec"]["tokenSecretName"]]["metadata"]}

    def settle(self, name: str) -> dict[str, Any]:
        asyncio.run(self.reconciler.settle(self.kube.archivejobs[name]))
        return self.kube.archivejobs[name]

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.kube.events]


def notified(aj: dict[str, Any]) -> tuple[str, str]:
    cond = find(aj["status"]["conditions"], "MoodleNotified")
    assert cond is not None, aj["status"]
    return cond["status"], cond["reason"]


def test_final_status_is_redelivered_when_moodle_is_back_then_the_secret_goes(
    moodle: FakeMoodle,
) -> None:
    w = World(moodle)
    aj, job = w.submit(phase="Failed", runnerPhase="Failed", pendingMoodleStatus="FAILED")
    name, secret = aj["metadata"]["name"], aj["spec"]["tokenSecretName"]
    moodle.faults.down("refuse")
    aj = w.settle(name)
    assert notified(aj) == ("False", "Redelivering")
    assert aj["status"]["moodleDeliveryAttempts"] == 1
    assert secret in w.kube.secrets and aj["metadata"]["labels"]["moodlearchiver.io/finished"]
    aj = w.settle(name)  # too early: the plan says wait, nothing is tried
    assert aj["status"]["moodleDeliveryAttempts"] == 1
    moodle.faults.up()
    w.clock.now += timedelta(seconds=30)
    aj = w.settle(name)
    assert notified(aj) == ("True", "Delivered")
    assert aj["status"]["moodleStatus"] == "FAILED" and "pendingMoodleStatus" not in aj["status"]
    assert job.status == "FAILED" and not job.token_valid
    assert secret not in w.kube.secrets
    assert w.reasons() == ["MoodleNotifyFailed", "MoodleNotified"]


def test_never_back_ends_with_token_expired_and_no_secret(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, job = w.submit(timeout=120, phase="TimedOut", pendingMoodleStatus="TIMEOUT")
    name = aj["metadata"]["name"]
    moodle.faults.down("refuse")
    for _ in range(30):
        aj = w.settle(name)
        if "pendingMoodleStatus" not in aj["status"]:
            break
        w.clock.now += timedelta(seconds=20)
    assert notified(aj) == ("False", "TokenExpired")
    assert aj["spec"]["tokenSecretName"] not in w.kube.secrets
    assert job.status == "AWAITING_PROCESSING"
    assert w.reasons()[-1] == "TokenExpired"


def test_a_job_the_pod_told_moodle_itself_needs_nothing(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, _ = w.submit(phase="Failed", runnerPhase="Failed", moodleStatus="FAILED")
    aj = w.settle(aj["metadata"]["name"])
    assert notified(aj) == ("True", "NotNeeded")
    assert aj["spec"]["tokenSecretName"] not in w.kube.secrets


def test_deleted_live_archivejob_tells_moodle_failed_once(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, job = w.submit(phase="Queued")
    secret_name = aj["spec"]["tokenSecretName"]
    secret = w.orphan(aj)
    asyncio.run(w.orphans.adopt(aj, secret))
    assert asyncio.run(w.orphans.visit(secret)) is True
    assert job.status == "FAILED" and secret_name not in w.kube.secrets
    failed = [s for s, _ in job.statusextras_history if s == "FAILED"]
    assert failed == ["FAILED"]
    event = w.kube.events[-1]
    assert event["reason"] == "MoodleNotified"
    assert event["involvedObject"]["name"] == aj["metadata"]["name"]


def test_orphaned_token_found_by_housekeeping_waits_for_moodle(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, job = w.submit(phase="Running")
    secret_name = aj["spec"]["tokenSecretName"]
    secret = w.orphan(aj)
    moodle.faults.down("refuse")
    assert asyncio.run(w.orphans.visit(secret)) is False  # tried, kept
    assert asyncio.run(w.orphans.visit(secret)) is False  # waits (not tried again)
    assert sum(e["reason"] == "MoodleNotifyFailed" for e in w.kube.events) == 1
    moodle.faults.up()
    w.clock.now += timedelta(seconds=60)
    assert asyncio.run(w.orphans.visit(secret)) is True
    assert job.status == "FAILED" and secret_name not in w.kube.secrets


def test_a_token_moodle_already_dropped_ends_the_duty(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, job = w.submit(phase="Cancelled", pendingMoodleStatus="FAILED")
    w.moodle.delete_job(job)  # a teacher deleted the job in Moodle: its token is gone
    aj = w.settle(aj["metadata"]["name"])
    assert notified(aj) == ("True", "AlreadyFinal")
    assert aj["spec"]["tokenSecretName"] not in w.kube.secrets


def test_an_orphaned_token_of_a_job_moodle_never_registered_is_dropped(moodle: FakeMoodle) -> None:
    """The gateway refused the task after storing its Secret: Moodle has no such job."""
    w = World(moodle)
    aj, moodle_job = w.submit(register=False)
    secret_name = aj["spec"]["tokenSecretName"]
    secret = w.orphan(aj)
    assert asyncio.run(w.orphans.visit(secret)) is True
    assert w.kube.events[-1]["reason"] == "MoodleUnknownJob"
    assert secret_name not in w.kube.secrets
    assert moodle_job.token_valid and moodle_job.status is None


def test_an_orphans_backoff_survives_an_operator_restart(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, job = w.submit(phase="Running")
    secret_name = aj["spec"]["tokenSecretName"]
    secret = w.orphan(aj)
    moodle.faults.down("refuse")
    assert asyncio.run(w.orphans.visit(secret)) is False  # try 1, recorded on the Secret
    annotations = w.kube.secrets[secret_name]["metadata"]["annotations"]
    state = json.loads(annotations[ANNOTATION_DELIVERY_STATE])
    assert (state["status"], state["attempts"]) == ("FAILED", 1)
    assert state["nextAttempt"] > state["lastAttempt"]
    restarted = w.operator()
    w.clock.now += timedelta(seconds=3)  # within the first backoff (5 s +- 20 %)
    assert asyncio.run(restarted.visit(secret)) is False
    assert sum(e["reason"] == "MoodleNotifyFailed" for e in w.kube.events) == 1  # no new try
    moodle.faults.up()
    w.clock.now += timedelta(seconds=5)
    assert asyncio.run(restarted.visit(secret)) is True
    assert job.status == "FAILED" and secret_name not in w.kube.secrets


def upload_archive_to_draft(moodle: FakeMoodle, job: Job) -> PendingArtifact:
    """What a runner leaves when its processing call got no answer: a draft file."""
    content = b"PK\x05\x06" + bytes(18)  # an empty ZIP
    answer = WsClient(moodle, job.token).upload(content, filename="archive.zip")
    assert answer.status_code == 200, answer.text
    return PendingArtifact.of(UploadedFile.model_validate(answer.json()[0]),
                              hashlib.sha256(content).hexdigest())  # fmt: skip


def deleted_owing_processing(w: World) -> tuple[dict[str, Any], Job, dict[str, Any]]:
    """An ArchiveJob whose runner uploaded the archive but got no answer to the processing
    call, deleted: the ArchiveJob (its last state), Moodle's job and the Secret's metadata."""
    aj, job = w.submit(phase="Failed", runnerPhase="Failed")
    pending = upload_archive_to_draft(w.moodle, job).model_dump(by_alias=True, exclude_none=True)
    aj["status"].update(pendingMoodleStatus="FINISHED", pendingArtifact=pending)
    return aj, job, w.orphan(aj)


def test_a_deleted_archivejob_owing_processing_gets_it_after_a_restart(
    moodle: FakeMoodle,
) -> None:
    """A processing call owed by a deleted ArchiveJob stays a processing call (not FAILED)
    for the next operator: the artifact is recorded on the Secret."""
    w = World(moodle)
    aj, job, secret = deleted_owing_processing(w)
    asyncio.run(w.orphans.adopt(aj, secret))
    assert asyncio.run(w.operator().visit(secret)) is True
    assert job.status_name == "FINISHED" and job.artifact is not None
    assert w.kube.events[-1]["reason"] == "MoodleNotified"


def test_redeliveries_pending_and_given_up_are_counted(moodle: FakeMoodle) -> None:
    w = World(moodle)
    aj, _ = w.submit(timeout=60, phase="TimedOut", pendingMoodleStatus="TIMEOUT")
    moodle.faults.down("refuse")
    w.settle(aj["metadata"]["name"])
    w.clock.now += timedelta(seconds=120)  # past the token's deadline
    w.settle(aj["metadata"]["name"])
    given_up = "moodle_archiver_operator_moodle_deliveries_abandoned_total"
    assert w.metric(given_up, status="TIMEOUT", reason="TokenExpired") == 1
    refused, _ = w.submit(phase="Failed", pendingMoodleStatus="FAILED")
    _, other = w.submit()  # a token Moodle knows, of another job: E_ACCESS_DENIED
    w.kube.secrets[refused["spec"]["tokenSecretName"]]["data"]["token"] = base64.b64encode(
        other.token.encode()).decode()  # fmt: skip
    moodle.faults.up()
    w.settle(refused["metadata"]["name"])
    assert notified(w.kube.archivejobs[refused["metadata"]["name"]]) == ("False", "Refused")
    assert w.metric(given_up, status="FAILED", reason="Refused") == 1
    exposition = "".join(str(m) for m in w.metrics.registry.collect())
    assert other.token not in exposition


def test_an_owed_processing_call_stays_one_when_its_state_cannot_be_written(
    moodle: FakeMoodle,
) -> None:
    w = World(moodle)
    aj, job, secret = deleted_owing_processing(w)

    async def refused(*_: Any) -> None:
        raise KubeError(503, "Service Unavailable")

    w.kube.patch_annotations = refused  # type: ignore[method-assign]
    asyncio.run(w.orphans.adopt(aj, secret))
    assert asyncio.run(w.orphans.visit(secret)) is True
    assert job.status_name == "FINISHED" and job.artifact is not None  # not told FAILED
