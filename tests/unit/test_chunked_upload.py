"""Chunked uploads (spec 2.9): the plan, the request body, and delivery to both plugin
generations of the fake Moodle (no browser: the archive is a file of random bytes)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from requests.models import RequestEncodingMixin

from moodle_archive_job.chunked_upload import (
    MIN_ATTEMPT_BYTES,
    ArchiveTooLarge,
    DeliveryCheck,
    UploadTarget,
    chunk_name,
    plan_upload,
    upload_archive,
)
from moodle_archive_job.final_status import PendingArtifact, deliver
from moodle_archive_job.moodle_api import JobStatus, api_for
from moodle_archive_job.moodle_client import MoodleClient, MoodleStatusError, UploadRefused
from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_job.task import ArchiveTask
from tests.fakemoodle import FakeMoodle, Job
from tests.fakemoodle.testing import WsClient, artifact_params
from tests.unit.request_bodies import minimal_task

MB = 1_000_000


def test_chunk_names_follow_the_plugin() -> None:
    assert chunk_name("quiz archive", 0) == "quiz archive.chunk000000000.bin"
    assert chunk_name("a.zip", 12) == "a.zip.chunk000000012.bin"


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [
        (1000, None, (None, 1)),  # no limit known: whole
        (900, 1000, (None, 1)),  # 900 + 100 overhead fits exactly
        (901, 1000, (880, 2)),  # one byte more: chunks of 1000 - 120
        (880 * 7, 1000, (880, 7)),
        (880 * 7 + 1, 1000, (880, 8)),
    ],
)
def test_plan_keeps_every_request_within_the_limit(
    size: int, limit: int | None, expected: tuple[int | None, int]
) -> None:
    plan = plan_upload(size, limit, whole_overhead=100, chunk_overhead=120)
    assert (plan.chunk_bytes, plan.count) == expected
    if plan.chunk_bytes is not None and limit is not None:
        assert plan.chunk_bytes + 120 <= limit
        assert plan.count == math.ceil(size / plan.chunk_bytes)


def test_a_limit_below_the_form_fields_is_refused_with_the_setting_to_raise() -> None:
    with pytest.raises(ArchiveTooLarge, match=r"maxbytes.*upload_max_filesize.*post_max_size"):
        plan_upload(10_000, 100, whole_overhead=100, chunk_overhead=120)


def test_streamed_body_is_what_requests_would_send(tmp_path: Path) -> None:
    data = os.urandom(5000)
    path = tmp_path / "a.zip"
    path.write_bytes(data)
    client = MoodleClient(_endpoints(), "secrettoken123")
    body = client.upload_body("Prüfung 1.zip.chunk000000001.bin", 77, path, 1000, 2500)
    sent = b"".join(body)
    assert len(sent) == len(body) == body.overhead + 2500
    fields = {"token": "secrettoken123", "filepath": "/", "itemid": "77"}
    files = {"file_1": ("Prüfung 1.zip.chunk000000001.bin", data[1000:3500], "application/zip")}
    expected, ctype = RequestEncodingMixin._encode_files(files, fields)
    theirs = ctype.split("boundary=")[1]
    assert sent == expected.replace(theirs.encode(), body.boundary.encode())


def test_early_check_before_rendering_and_during_the_run() -> None:
    # A plugin that cannot take chunks, with a configured limit: 30 attempts never fit 100 kB.
    whole = DeliveryCheck(UploadTarget(100_000, chunks=False), 300, 320)
    with pytest.raises(ArchiveTooLarge, match="maxbytes"):
        whole.check(0, 0, 30)
    whole.check(0, 0, 10)  # 10 x the lower bound fits: nothing known yet
    with pytest.raises(ArchiveTooLarge):
        whole.check(100_000, 3, 10)  # already beyond
    # Projection after enough attempts: 6 attempts made 60 kB, 100 attempts would make 1 MB.
    with pytest.raises(ArchiveTooLarge, match="100 attempts"):
        whole.check(60_000, 6, 100)
    whole.check(60_000, 6, 12)  # 120 kB projected: not far above, decided at the upload
    # Chunks make a limit a matter of request count only; no limit: nothing to check.
    DeliveryCheck(UploadTarget(100_000, chunks=True), 300, 320).check(50 * MB, 6, 10)
    DeliveryCheck(UploadTarget(None, chunks=False), 300, 320).check(10**12, 0, 10**6)
    assert MIN_ATTEMPT_BYTES > 0


def test_upload_target_prefers_the_plugins_limit() -> None:
    task = minimal_task(moodle_max_upload_bytes=5 * MB)
    assert UploadTarget.of(task, 1 * MB) == UploadTarget(5 * MB, True)
    assert UploadTarget.of(minimal_task(), 1 * MB) == UploadTarget(1 * MB, False)
    assert UploadTarget.of(minimal_task(), None) == UploadTarget(None, False)


# --- against the fake Moodle -------------------------------------------------------------------


@pytest.fixture
def next_moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle(plugin_release="next") as fake:
        yield fake


@pytest.fixture
def old_moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


def _job(moodle: FakeMoodle, protocol: str = "quiz_archiver") -> tuple[Job, ArchiveTask, str]:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, protocol=protocol)  # type: ignore[arg-type]
    jobid = str(uuid.uuid4())
    moodle.register_job(job, jobid)
    parsed = parse_archive_request(job.request_body, detect_protocol(job.request_body))
    return job, parsed.task, jobid


def _archive(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "archive.zip"
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MB))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return path, digest.hexdigest()


def _deliver(moodle: FakeMoodle, job: Job, task: ArchiveTask, jobid: str, path: Path,
             sha256: str, configured: int | None = None) -> int | None:  # fmt: skip
    client = MoodleClient(task.moodle, job.token, retries=2, backoff_sec=0.01)
    try:
        target = UploadTarget.of(task, configured)
        delivered = upload_archive(client, path, task.archive_name, target)
        api_for(task, client, jobid).process_uploaded_artifact(
            delivered.draft, sha256, delivered.artifact_count
        )
        return delivered.artifact_count
    finally:
        client.close()


@pytest.mark.slow
def test_100_mb_archive_goes_up_in_10_mb_requests(next_moodle: FakeMoodle, tmp_path: Path) -> None:
    next_moodle.faults.max_upload_bytes = 10 * MB
    next_moodle.faults.post_max_size = 10 * MB  # PHP counts the whole request body
    job, task, jobid = _job(next_moodle)
    assert task.moodle_max_upload_bytes == 10 * MB
    path, sha256 = _archive(tmp_path, 100 * MB)
    count = _deliver(next_moodle, job, task, jobid, path, sha256)
    uploads = [c for c in next_moodle.calls if c.endpoint == "upload"]
    assert count == len(uploads) == 11  # 100 MB / (10 MB - a few hundred bytes of form)
    assert all(c.bytes_in <= 10 * MB for c in uploads)
    names = [c.params["files"][0] for c in uploads]
    assert names == [chunk_name(task.archive_name, i) for i in range(11)]
    (process,) = next_moodle.ws_calls("quiz_archiver_process_uploaded_artifact")
    assert process.params["artifact_count"] == "11" and process.response_status == "OK"
    stored = next_moodle.job(jobid)
    assert stored.status_name == "FINISHED" and stored.artifact_sha256 == sha256
    assert hashlib.sha256(stored.artifact or b"").hexdigest() == sha256
    assert not next_moodle.site.drafts, "the chunks were not deleted"


def test_small_archive_goes_up_whole_with_count_1(next_moodle: FakeMoodle, tmp_path: Path) -> None:
    job, task, jobid = _job(next_moodle)
    path, sha256 = _archive(tmp_path, 50_000)
    assert _deliver(next_moodle, job, task, jobid, path, sha256) == 1
    (process,) = next_moodle.ws_calls("quiz_archiver_process_uploaded_artifact")
    assert process.params["artifact_count"] == "1"
    assert next_moodle.job(jobid).status_name == "FINISHED"


def test_a_failed_chunk_is_retried_alone(next_moodle: FakeMoodle, tmp_path: Path) -> None:
    next_moodle.faults.max_upload_bytes = 100_000
    next_moodle.faults.fail_next("upload", 1, status=503, after=3)  # the fourth request
    job, task, jobid = _job(next_moodle)
    path, sha256 = _archive(tmp_path, 450_000)
    assert _deliver(next_moodle, job, task, jobid, path, sha256) == 5
    uploads = [c for c in next_moodle.calls if c.endpoint == "upload"]
    assert [c.http_status for c in uploads] == [200, 200, 200, 503, 200, 200]
    stored = [c.params["files"][0] for c in uploads if c.http_status == 200]
    assert stored == [chunk_name(task.archive_name, i) for i in range(5)]
    assert next_moodle.job(jobid).status_name == "FINISHED"


def test_archivingmod_quiz_next_takes_chunks_too(next_moodle: FakeMoodle, tmp_path: Path) -> None:
    next_moodle.faults.max_upload_bytes = 100_000
    job, task, jobid = _job(next_moodle, "archivingmod_quiz")
    assert job.request_body["moodle_api"]["max_upload_bytes"] == 100_000
    path, sha256 = _archive(tmp_path, 250_000)
    assert _deliver(next_moodle, job, task, jobid, path, sha256) == 3
    assert next_moodle.job(jobid).status_name == "FINISHED"


def test_plugin_4_1_0_never_sees_artifact_count(old_moodle: FakeMoodle, tmp_path: Path) -> None:
    job, task, jobid = _job(old_moodle)
    assert "moodle_max_upload_bytes" not in job.request_body and not task.takes_chunks
    path, sha256 = _archive(tmp_path, 300_000)
    assert _deliver(old_moodle, job, task, jobid, path, sha256) is None
    (process,) = old_moodle.ws_calls("quiz_archiver_process_uploaded_artifact")
    assert "artifact_count" not in process.params
    assert old_moodle.job(jobid).status_name == "FINISHED"


def test_plugin_4_1_0_above_the_limit(old_moodle: FakeMoodle, tmp_path: Path) -> None:
    old_moodle.faults.max_upload_bytes = 100_000
    job, task, jobid = _job(old_moodle)
    path, sha256 = _archive(tmp_path, 300_000)
    with pytest.raises(UploadRefused, match=r"fileoversized.*300000 bytes.*maxbytes"):
        _deliver(old_moodle, job, task, jobid, path, sha256)
    # With the limit configured for the runner, nothing is sent at all.
    old_moodle.clear_calls()
    with pytest.raises(ArchiveTooLarge, match="cannot take it in chunks"):
        _deliver(old_moodle, job, task, jobid, path, sha256, configured=100_000)
    assert not [c for c in old_moodle.calls if c.endpoint == "upload"]


# --- the fake Moodle is as strict as the plugins -------------------------------------------------


def _upload_chunks(client: WsClient, name: str, parts: dict[int, bytes]) -> dict:  # type: ignore[type-arg]
    first: dict | None = None  # type: ignore[type-arg]
    for index, content in parts.items():
        itemid = 0 if first is None else first["itemid"]
        entry = client.upload(content, chunk_name(name, index), itemid=itemid).json()[0]
        first = first or entry
    assert first is not None
    return {**first, "filename": name}


def test_fake_4_1_0_rejects_artifact_count_like_moodle(old_moodle: FakeMoodle) -> None:
    job, _task, jobid = _job(old_moodle)
    client = WsClient(old_moodle, job.token, method="POST")
    entry = client.upload(b"abc").json()[0]
    params = {"jobid": jobid, **artifact_params(entry, hashlib.sha256(b"abc").hexdigest())}
    answer = client.call("quiz_archiver_process_uploaded_artifact", **params, artifact_count=1)
    assert answer["errorcode"] == "invalidparameter"
    assert "Unexpected keys (artifact_count)" in answer["debuginfo"]


def test_fake_next_requires_artifact_count(next_moodle: FakeMoodle) -> None:
    job, _task, jobid = _job(next_moodle)
    client = WsClient(next_moodle, job.token, method="POST")
    entry = client.upload(b"abc").json()[0]
    params = {"jobid": jobid, **artifact_params(entry, hashlib.sha256(b"abc").hexdigest())}
    answer = client.call("quiz_archiver_process_uploaded_artifact", **params)
    assert answer["errorcode"] == "invalidparameter"
    assert re.search(r"artifact_count", answer["debuginfo"])


@pytest.mark.parametrize(("parts", "count", "status"), [
    ({0: b"aa", 2: b"cc"}, 3, "E_CHUNK_REASSEMBLY_FAILED"),  # a gap
    ({0: b"aa", 1: b"bb"}, 3, "E_CHUNK_REASSEMBLY_FAILED"),  # one short
    ({0: b"aa", 1: b"bb"}, 0, "E_INVALID_ARTIFACT_COUNT"),
    ({1: b"bb", 0: b"aa"}, 2, "OK"),  # upload order does not matter, index order does
    ({0: b"bb", 1: b"aa"}, 2, "E_ARTIFACT_CHECKSUM_INVALID"),  # swapped contents
])  # fmt: skip
def test_fake_next_reassembles_in_index_order(
    next_moodle: FakeMoodle, parts: dict[int, bytes], count: int, status: str
) -> None:
    job, task, jobid = _job(next_moodle)
    client = WsClient(next_moodle, job.token, method="POST")
    draft = _upload_chunks(client, task.archive_name, parts)
    params = {"jobid": jobid, **artifact_params(draft, hashlib.sha256(b"aabb").hexdigest())}
    answer = client.call("quiz_archiver_process_uploaded_artifact", **params, artifact_count=count)
    assert answer == {"status": status}
    stored = next_moodle.job(jobid)
    assert stored.status_name == ("FINISHED" if status == "OK" else "FAILED")
    if status == "OK":
        assert stored.artifact == b"aabb"
    if count >= 1:  # the plugin deleted every chunk it appended, up to a missing one
        left = {d.filename for d in next_moodle.site.drafts.values()}
        assert chunk_name(task.archive_name, 0) not in left


def test_runner_explains_reassembly_statuses(next_moodle: FakeMoodle, tmp_path: Path) -> None:
    job, task, jobid = _job(next_moodle)
    client = MoodleClient(task.moodle, job.token, retries=0)
    one = tmp_path / "one.bin"
    one.write_bytes(b"1")
    draft = client.upload(one, "a.zip")
    assert draft is not None
    chunked = draft.model_copy(update={"filename": task.archive_name})
    with pytest.raises(MoodleStatusError, match=r"E_CHUNK_REASSEMBLY_FAILED \(Moodle could not "
                       r"put the archive together from the 4 uploaded chunks"):  # fmt: skip
        api_for(task, client, jobid).process_uploaded_artifact(chunked, "0" * 64, 4)
    client.close()


def _endpoints():  # type: ignore[no-untyped-def]
    return minimal_task().moodle




def test_redelivery_by_the_operator_keeps_the_chunk_count(
    next_moodle: FakeMoodle, tmp_path: Path
) -> None:
    next_moodle.faults.max_upload_bytes = 100_000
    job, task, jobid = _job(next_moodle)
    path, sha256 = _archive(tmp_path, 250_000)
    client = MoodleClient(task.moodle, job.token, retries=0)
    delivered = upload_archive(client, path, task.archive_name, UploadTarget.of(task, None))
    pending = PendingArtifact.of(delivered.draft, sha256, delivered.artifact_count)
    # Through the ArchiveJob's status.pendingArtifact and back, as the operator reads it.
    status_json = json.loads(json.dumps(pending.model_dump(by_alias=True)))
    assert status_json["artifactCount"] == 3
    again = PendingArtifact.model_validate(status_json)
    assert deliver(api_for(task, client, jobid), JobStatus.FINISHED, again) == "OK"
    client.close()
    assert next_moodle.job(jobid).status_name == "FINISHED"
