"""The ArchiveJob CRD and its pydantic mirror, and the pure manifest builders."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from moodle_archive_job.request_parsing import parse_archive_request
from moodle_archive_job.task import Protocol
from moodle_archive_operator.archivejob import (
    ANNOTATION_ARCHIVEJOB,
    ANNOTATION_DELIVERY,
    API_VERSION,
    LABEL_ARCHIVEJOB_UID,
    LABEL_JOB_ID,
    ArchiveJob,
    ArchiveJobSpec,
    ArchiveJobStatus,
    AttemptsSpec,
    BackupSpec,
    DeliveryFacts,
    MoodleSpec,
    ShardStatus,
    build_archivejob,
    build_event,
    build_token_secret,
    new_job_id,
    spec_from_task,
    task_from_spec,
)
from tests.unit.request_bodies import TOKEN, v1_body, v7_body

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "archivejobs.moodlearchiver.io.yaml"
BODIES = [(v7_body(), Protocol.QUIZ_ARCHIVER_V7), (v1_body(), Protocol.ARCHIVINGMOD_QUIZ_V1)]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version


def _created(manifest: dict[str, Any]) -> dict[str, Any]:
    created = json.loads(json.dumps(manifest))
    created["metadata"]["uid"] = str(uuid.uuid4())
    return created


@pytest.mark.parametrize(("body", "protocol"), BODIES)
def test_task_survives_the_trip_through_an_archivejob(body: dict[str, Any], protocol: Protocol):
    task = parse_archive_request(body, protocol).task
    job_id = new_job_id()
    manifest = build_archivejob(spec_from_task(task, job_id, 1800), "jobs")
    wire = json.loads(json.dumps(manifest))  # what the API server stores
    spec = ArchiveJobSpec.model_validate(wire["spec"])
    assert task_from_spec(spec) == task
    assert spec.timeout_seconds == 1800 and spec.job_id == job_id
    assert TOKEN not in json.dumps(manifest)


def test_sections_keep_their_json_types() -> None:
    body = v7_body()
    body["task_archive_quiz_attempts"]["sections"]["history"] = 0
    task = parse_archive_request(body, Protocol.QUIZ_ARCHIVER_V7).task
    spec = build_archivejob(spec_from_task(task, new_job_id(), 60), "jobs")["spec"]
    assert spec["attempts"]["sections"]["history"] == 0
    assert spec["attempts"]["sections"]["header"] == "1"


def test_manifest_names_and_labels() -> None:
    task = parse_archive_request(v7_body(), Protocol.QUIZ_ARCHIVER_V7).task
    job_id = new_job_id()
    assert uuid.UUID(job_id).version == 4
    manifest = build_archivejob(spec_from_task(task, job_id, 60), "jobs")
    meta = manifest["metadata"]
    assert manifest["apiVersion"] == API_VERSION and manifest["kind"] == "ArchiveJob"
    assert meta["name"] == f"archive-{job_id}" and meta["namespace"] == "jobs"
    assert meta["labels"][LABEL_JOB_ID] == job_id
    assert meta["labels"]["app.kubernetes.io/part-of"] == "moodle-archive-operator"
    assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(meta["labels"])
    spec = manifest["spec"]
    assert spec["jobId"] == job_id and spec["tokenSecretName"] == f"archive-{job_id}-token"
    assert (spec["courseId"], spec["cmId"], spec["quizId"]) == (9, 23, 12)
    assert spec["protocol"] == "quiz_archiver/v7" and spec["cancelRequested"] is False


def test_token_secret_names_its_archivejob_and_carries_the_delivery_facts() -> None:
    task = parse_archive_request(v1_body(), Protocol.ARCHIVINGMOD_QUIZ_V1).task
    created = _created(build_archivejob(spec_from_task(task, new_job_id(), 60), "jobs"))
    created["metadata"]["creationTimestamp"] = "2026-01-01T12:00:00Z"
    secret = build_token_secret(created, SecretStr(TOKEN), "jobs")
    assert secret["type"] == "Opaque" and secret["immutable"] is True
    assert secret["stringData"] == {"token": TOKEN}
    meta = secret["metadata"]
    assert meta["name"] == created["spec"]["tokenSecretName"]
    # Not owned: it must outlive a deleted ArchiveJob until Moodle has been told.
    assert "ownerReferences" not in meta
    assert meta["labels"][LABEL_ARCHIVEJOB_UID] == created["metadata"]["uid"]
    assert meta["annotations"][ANNOTATION_ARCHIVEJOB] == created["metadata"]["name"]
    assert meta["labels"][LABEL_JOB_ID] == created["spec"]["jobId"]
    annotation = meta["annotations"][ANNOTATION_DELIVERY]
    assert TOKEN not in annotation and TOKEN not in json.dumps(meta)
    facts = DeliveryFacts.model_validate_json(annotation)
    assert facts.deadline == datetime(2026, 1, 1, 12, 1, tzinfo=UTC)  # created + 60 s
    assert (facts.job_id, facts.task_id, facts.protocol) == (
        created["spec"]["jobId"], task.taskid, Protocol.ARCHIVINGMOD_QUIZ_V1)  # fmt: skip
    assert facts.task().moodle == task.moodle and facts.task().taskid == task.taskid


def test_event_about_an_archivejob() -> None:
    task = parse_archive_request(v7_body(), Protocol.QUIZ_ARCHIVER_V7).task
    created = _created(build_archivejob(spec_from_task(task, new_job_id(), 60), "jobs"))
    event = build_event(created, "Accepted", "x" * 5000, "moodle-archiver-gateway")
    assert event["involvedObject"]["uid"] == created["metadata"]["uid"]
    assert event["reason"] == "Accepted" and len(event["message"]) == 1024


def test_crd_names_scope_and_subresources(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "archivejobs.moodlearchiver.io"
    assert spec["group"] == "moodlearchiver.io" and spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"]) == ("ArchiveJob", "archivejobs")
    assert names["shortNames"] == ["aj"] and "moodle" in names["categories"]
    version = _version(crd)
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_crd_printer_columns_list_age_explicitly(crd: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in _version(crd)["additionalPrinterColumns"]}
    default = [name for name, c in columns.items() if c.get("priority", 0) == 0]
    assert default == ["Phase", "Progress", "Reason", "Quiz", "Attempts", "Age"]
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert "Succeeded" in columns["Reason"]["jsonPath"]


def _properties(schema: dict[str, Any]) -> set[str]:
    return set(schema.get("properties", {}))


def _aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize(
    ("path", "model"),
    [
        (("spec",), ArchiveJobSpec),
        (("spec", "moodle"), MoodleSpec),
        (("spec", "attempts"), AttemptsSpec),
        (("spec", "backups", "items"), BackupSpec),
        (("status",), ArchiveJobStatus),
        (("status", "shards", "additionalProperties"), ShardStatus),
    ],
)
def test_crd_schema_and_models_agree(
    crd: dict[str, Any], path: tuple[str, ...], model: type[BaseModel]
) -> None:
    schema = _version(crd)["schema"]["openAPIV3Schema"]
    for key in path:
        nested = key in ("items", "additionalProperties")
        schema = schema[key] if nested else schema["properties"][key]
    assert _properties(schema) == _aliases(model)
    required = {a for n, f in model.model_fields.items() if f.is_required() for a in [f.alias or n]}
    assert set(schema.get("required", [])) == required


def test_status_model_reads_what_the_operator_writes() -> None:
    obj = {
        "metadata": {"name": "archive-x"},
        "spec": build_archivejob(
            spec_from_task(
                parse_archive_request(v7_body(), Protocol.QUIZ_ARCHIVER_V7).task,
                new_job_id(),
                60,
            ),
            "jobs",
        )["spec"],
        "status": {
            "phase": "Failed",
            "progress": 50,
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "False",
                    "reason": "DeadlineExceeded",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "artifact": {"name": "a.zip", "size": 3, "sha256": "0" * 64},
        },
    }
    job = ArchiveJob.model_validate(obj)
    assert job.is_final and job.name == "archive-x"
    succeeded = job.status.condition("Succeeded")
    assert succeeded is not None and succeeded.reason == "DeadlineExceeded"
