"""Requests of the newer plugin generation at the gateway: the upload limit and worker 5.0's
archive options are validated like every other field and reach the ArchiveJob spec."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from moodle_archive_job.task import ArchiveStructure
from moodle_archive_operator.archivejob import ArchiveJobSpec, task_from_spec
from tests.gateway.conftest import FakeProbe
from tests.gateway.fakekube import FakeKube
from tests.gateway.test_http_accept import accepted_job_id
from tests.gateway.test_http_validation import error_of
from tests.unit.request_bodies import v1_body, v7_body

BAD_LIMIT = "JSON data is invalid: Moodle max upload bytes is invalid."


def _v1(api: dict[str, Any] | None = None, job: dict[str, Any] | None = None) -> dict[str, Any]:
    body = v1_body()
    body["moodle_api"].update(api or {})
    body["job"].update(job or {})
    return body


@pytest.mark.parametrize(
    ("path", "body", "spec_keys"),
    [
        ("/archive", v7_body(moodle_max_upload_bytes=10_485_760),
         {"moodleMaxUploadBytes": 10_485_760}),
        ("/archive", v7_body(archive_flatten=True, archive_filehashes=False),
         {"archiveStructure": "flat", "checksumSidecars": False}),
        ("/archive/archivingmod_quiz",
         _v1({"max_upload_bytes": 2_097_152}, {"archive_flatten": False}),
         {"moodleMaxUploadBytes": 2_097_152, "archiveStructure": "nested"}),
        ("/archive", v7_body(), {}),  # plugin 4.1.0: none of them
    ],
)  # fmt: skip
def test_new_keys_reach_the_archivejob(
    client: TestClient, kube: FakeKube, path: str, body: dict[str, Any], spec_keys: dict[str, Any]
) -> None:
    job_id = accepted_job_id(client.post(path, json=body))
    spec = kube.archivejobs[f"archive-{job_id}"]["spec"]
    new = {"moodleMaxUploadBytes", "archiveStructure", "checksumSidecars"}
    assert {k: v for k, v in spec.items() if k in new} == spec_keys
    task = task_from_spec(ArchiveJobSpec.model_validate(spec))
    assert task.moodle_max_upload_bytes == spec_keys.get("moodleMaxUploadBytes")
    assert task.takes_chunks == ("moodleMaxUploadBytes" in spec_keys)
    if "archiveStructure" in spec_keys:
        assert task.archive_structure is ArchiveStructure(spec_keys["archiveStructure"])


@pytest.mark.parametrize("value", [0, -1, "10485760", 1.5, True, None, [1], {"a": 1}])
def test_invalid_upload_limit_is_refused(
    client: TestClient, kube: FakeKube, probe: FakeProbe, value: Any
) -> None:
    v7 = v7_body(moodle_max_upload_bytes=value)
    assert error_of(client.post("/archive", json=v7), 400) == BAD_LIMIT
    v1 = _v1({"max_upload_bytes": value})
    assert error_of(client.post("/archive/archivingmod_quiz", json=v1), 400) == BAD_LIMIT
    assert probe.calls == [] and kube.archivejobs == {}


@pytest.mark.parametrize(
    ("key", "message"),
    [("archive_flatten", "Archive flatten flag is invalid."),
     ("archive_filehashes", "Archive filehashes flag is invalid.")],
)  # fmt: skip
@pytest.mark.parametrize("value", ["true", 1, None])
def test_invalid_archive_options_are_refused(
    client: TestClient, kube: FakeKube, key: str, message: str, value: Any
) -> None:
    response = client.post("/archive", json=v7_body(**{key: value}))
    assert error_of(response, 400) == f"JSON data is invalid: {message}"
    assert kube.archivejobs == {}
