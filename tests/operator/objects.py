"""ArchiveJobs, Jobs and pods as the API server returns them, for the operator's unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from moodle_archive_job.task import ArchiveTask, AttemptsTask, MoodleEndpoints, Protocol
from moodle_archive_operator.archivejob import (
    build_archivejob,
    build_token_secret,
    new_job_id,
    spec_from_task,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def task(base_url: str = "https://moodle.example", attempts: int = 3) -> ArchiveTask:
    return ArchiveTask(
        protocol=Protocol.QUIZ_ARCHIVER_V7,
        moodle=MoodleEndpoints(
            base_url=base_url,
            ws_url=f"{base_url}/webservice/rest/server.php",
            upload_url=f"{base_url}/webservice/upload.php",
        ),
        archive_filename="quiz-archive",
        courseid=2,
        cmid=3,
        quizid=4,
        attempts=AttemptsTask(
            attemptids=list(range(1, attempts + 1)),
            sections={"header": "1", "question": "1"},
            foldername_pattern="${username}",
            filename_pattern="attempt-${attemptid}",
        ),
    )


def archivejob(
    namespace: str = "jobs",
    created: datetime = T0,
    timeout: int = 600,
    status: dict[str, Any] | None = None,
    **spec_overrides: Any,
) -> dict[str, Any]:
    """An ArchiveJob as the gateway builds it, with what the API server adds."""
    spec = spec_from_task(task(), new_job_id(), timeout, submitted_at=created)
    obj = build_archivejob(spec, namespace)
    obj["spec"].update(spec_overrides)
    obj["metadata"].update(
        uid=str(uuid.uuid4()), creationTimestamp=stamp(created), generation=1, resourceVersion="1"
    )
    if status is not None:
        obj["status"] = status
    return obj


def token_secret(aj: dict[str, Any], token: str = "0123456789abcdef0123456789abcdef") -> dict:  # noqa: S107
    return build_token_secret(aj, SecretStr(token), aj["metadata"]["namespace"])


def job(
    aj: dict[str, Any],
    finished: str | None = None,
    reason: str = "",
    created: datetime = T0,
) -> dict[str, Any]:
    conditions = []
    if finished:
        conditions.append({"type": finished, "status": "True", "reason": reason, "message": ""})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": aj["metadata"]["name"],
            "namespace": aj["metadata"]["namespace"],
            "uid": str(uuid.uuid4()),
            "creationTimestamp": stamp(created),
            "annotations": {"moodlearchiver.io/archivejob": aj["metadata"]["name"]},
            "ownerReferences": [
                {"kind": "ArchiveJob", "apiVersion": "moodlearchiver.io/v1alpha1",
                 "name": aj["metadata"]["name"], "uid": aj["metadata"]["uid"]}
            ],
        },
        "status": {"conditions": conditions},
    }  # fmt: skip


def pod(
    phase: str = "Running",
    started: datetime | None = T0 + timedelta(seconds=5),
    node: str | None = "kwok-node-0",
    created: datetime = T0,
    name: str = "archive-x-abcde",
    **status: Any,
) -> dict[str, Any]:
    state: dict[str, Any]
    if phase == "Running" and started is not None:
        state = {"running": {"startedAt": stamp(started)}}
    elif phase in ("Succeeded", "Failed"):
        state = {
            "terminated": {
                "exitCode": status.pop("exit_code", 0 if phase == "Succeeded" else 1),
                "reason": status.pop("term_reason", "Error"),
                "startedAt": stamp(started or T0),
            }
        }
    else:
        state = {"waiting": {"reason": status.pop("waiting", "ContainerCreating")}}
    return {
        "metadata": {"name": name, "creationTimestamp": stamp(created)},
        "spec": {"nodeName": node} if node else {},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "runner", "state": state}],
            **status,
        },
    }  # fmt: skip
