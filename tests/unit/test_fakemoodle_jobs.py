"""Job creation (request bodies), registration, the plugin's enqueue call and archivingmod_quiz."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakemoodle import FakeMoodle
from tests.fakemoodle.testing import WsClient, artifact_params, decode_first_json, sections

V7_KEYS = [
    "api_version",
    "moodle_base_url",
    "moodle_ws_url",
    "moodle_upload_url",
    "wstoken",
    "courseid",
    "cmid",
    "quizid",
    "task_archive_quiz_attempts",
    "task_moodle_backups",
    "archive_filename",
]
BACKUP_KEYS = [
    "backupid",
    "userid",
    "context",
    "component",
    "filearea",
    "filepath",
    "filename",
    "itemid",
    "pathnamehash",
    "file_download_url",
]


@pytest.fixture
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


# -- request bodies --------------------------------------------------------------------------------


def test_quiz_archiver_body(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(
        attempts=3, name="Reference Quiz", course_shortname="QA", preview_attempts=1
    )
    job = moodle.create_job(
        quiz, backups=("course", "quiz"), image_optimize=True, keep_html_files=True
    )
    body = job.request_body
    assert list(body) == V7_KEYS
    assert body["api_version"] == 7 and body["wstoken"] == job.token and len(job.token) == 32
    int(job.token, 16)
    assert body["moodle_ws_url"] == moodle.base_url + "/webservice/rest/server.php"
    assert body["moodle_upload_url"] == moodle.base_url + "/webservice/upload.php"
    task = body["task_archive_quiz_attempts"]
    assert (
        task["attemptids"] == quiz.attemptids and len(quiz.attempts) == 4
    )  # the preview is not exported
    assert task["fetch_metadata"] is True and task["keep_html_files"] is True
    assert task["sections"] == dict.fromkeys(sections(), "1")
    assert task["image_optimize"] == {"width": 1280, "height": 1280, "quality": 85}
    assert [b["filearea"] for b in body["task_moodle_backups"]] == ["activity", "course"]
    for entry in body["task_moodle_backups"]:
        assert list(entry) == BACKUP_KEYS
        assert (
            entry["component"] == "backup" and entry["filepath"] == "/" and entry["itemid"] is None
        )
        assert len(entry["backupid"]) == 32 and entry["file_download_url"].endswith(
            "/" + entry["filename"]
        )
        kind, ident = (
            entry["filearea"],
            quiz.cmid if entry["filearea"] == "activity" else quiz.courseid,
        )
        name = entry["filename"]
        assert name.startswith(f"quiz_archiver-{kind}-backup-{ident}-") and name.endswith(".mbz")
        path = f"/{entry['context']}/backup/{kind}/0/{name}".encode()
        expected = hashlib.sha1(path).hexdigest()  # noqa: S324 - Moodle's pathnamehash
        assert entry["pathnamehash"] == expected
    assert body["archive_filename"].startswith(
        f"quiz-archive-QA-{quiz.courseid}-Reference Quiz-{quiz.quizid}-"
    )
    assert job.endpoint_path == "/archive"


def test_sections_follow_the_plugins_dependency_rules(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, sections={"question": False, "quiz_feedback": "0"})
    values = job.request_body["task_archive_quiz_attempts"]["sections"]
    assert values["question"] == "0" and values["quiz_feedback"] == "0" and values["header"] == "1"
    assert values["history"] == 0 and values["attachments"] == 0 and values["quiz_grade"] == "1"
    assert job.request_body["task_moodle_backups"] is None
    with pytest.raises(ValueError):
        moodle.create_job(quiz, sections={"nonsense": True})


def test_archivingmod_quiz_body(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=2)
    job = moodle.create_job(quiz, protocol="archivingmod_quiz", sections={"attachments": False})
    body = job.request_body
    assert list(body) == ["api_version", "taskid", "moodle_api", "job"]
    assert body["api_version"] == 1 and body["taskid"] == job.taskid
    assert body["moodle_api"] == {
        "wstoken": job.token,
        "base_url": moodle.base_url,
        "webservice_url": moodle.base_url + "/webservice/rest/server.php",
        "upload_url": moodle.base_url + "/webservice/upload.php",
    }
    assert list(body["job"]) == [
        "attemptids",
        "report_sections",
        "paper_format",
        "archive_filename",
        "foldername_pattern",
        "filename_pattern",
        "image_optimize",
        "fetch_metadata",
        "fetch_attachments",
        "keep_html_files",
    ]
    assert list(body["job"]["report_sections"]) == list(sections("archivingmod_quiz"))
    assert body["job"]["fetch_attachments"] is False and body["job"]["image_optimize"] is False
    assert body["job"]["archive_filename"].startswith(
        f"archive-QA-{quiz.courseid}-quiz-Reference Quiz-{quiz.cmid}_"
    )
    assert job.endpoint_path == "/archive/archivingmod_quiz"
    assert job.status == 20 and job.status_name == "CREATED"


def test_register_job_rules(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    first, second = moodle.create_job(quiz), moodle.create_job(quiz)
    moodle.register_job(first, "a" * 36)
    assert moodle.job("a" * 36) is first and first.status == "AWAITING_PROCESSING"
    with pytest.raises(ValueError):
        moodle.register_job(second, "a" * 36)  # unique index
    with pytest.raises(ValueError):
        moodle.register_job(second, "b" * 37)  # char(36)
    with pytest.raises(KeyError):
        moodle.job("unknown")


# -- the plugin's HTTP call ------------------------------------------------------------------------


class _Worker:
    """A tiny worker stand-in: records requests, answers with a configured status and body."""

    def __init__(self, status: int, answer: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": raw}
                )
                data = json.dumps(answer).encode() if not isinstance(answer, bytes) else answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_submit_job_posts_like_the_plugin_and_registers(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz)
    worker = _Worker(
        200, {"jobid": "c0ffee00-0000-11f1-8000-000000000001", "status": "AWAITING_PROCESSING"}
    )
    try:
        result = moodle.submit_job(job, worker.url + "/")
    finally:
        worker.close()
    assert result.ok and result.http_status == 200
    (request,) = worker.requests
    assert request["path"] == "/archive"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == job.request_body
    assert moodle.job("c0ffee00-0000-11f1-8000-000000000001").status == "AWAITING_PROCESSING"


def test_submit_job_surfaces_worker_errors(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz)
    worker = _Worker(400, {"error": "JSON data is invalid: nope"})
    try:
        result = moodle.submit_job(job, worker.url)
    finally:
        worker.close()
    assert (
        not result.ok
        and result.message == "The archive worker reported an error: JSON data is invalid: nope"
    )
    assert not job.registered
    worker = _Worker(200, b"not json")
    try:
        result = moodle.submit_job(job, worker.url)
    finally:
        worker.close()
    assert (
        not result.ok
        and result.message == "Establishing a connection to the archive worker failed."
    )


def test_auto_register_after_first_call(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, auto_register_after=0.3)
    client = WsClient(moodle, job.token)
    jobid = "5eed0000-0000-11f1-8000-000000000001"
    assert client.call("quiz_archiver_update_job_status", jobid=jobid, status="RUNNING") == {
        "status": "E_UPDATE_FAILED"
    }
    deadline = time.monotonic() + 5
    while not job.registered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.registered and job.jobid == jobid
    assert client.call("quiz_archiver_update_job_status", jobid=jobid, status="RUNNING") == {
        "status": "OK"
    }


def test_lazy_timeout_when_the_page_is_opened(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, timeout_min=1)
    moodle.register_job(job, "lazy")
    assert moodle.open_archiver_page(quiz) == []
    moodle.expire_job(job)
    assert moodle.open_archiver_page(quiz) == [job]
    assert job.status == "TIMEOUT" and not job.token_valid


# -- archivingmod_quiz (API v1) --------------------------------------------------------------------


def test_archivingmod_quiz_flow(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=2, attachments_per_attempt=1)
    job = moodle.create_job(quiz, protocol="archivingmod_quiz")
    client = WsClient(moodle, job.token)
    probe = client.call("archivingmod_quiz_update_task_status")
    assert probe["errorcode"] == "invalidparameter"
    assert probe["debuginfo"] == "Missing required key in single structure: uuid"
    assert client.call("quiz_archiver_update_job_status")["errorcode"] == "accessexception"
    uuid = "7a7a7a7a-0000-11f1-8000-000000000001"
    update = "archivingmod_quiz_update_task_status"
    # The task row exists before the worker answered; the driver then resets it to 40.
    assert client.call(update, uuid=uuid, taskid=job.taskid, status=100, progress=0) == {
        "status": "OK"
    }
    moodle.register_job(job, uuid)
    assert job.status == 40
    assert (
        client.call(update, uuid=uuid, taskid=job.taskid, status="RUNNING")["errorcode"]
        == "invalidparameter"
    )
    assert client.call(update, uuid=uuid, taskid=job.taskid, status=101) == {
        "status": "E_INVALID_STATUS"
    }
    assert client.call(update, uuid=uuid, taskid=job.taskid, status=100, progress=101) == {
        "status": "E_INVALID_PROGRESS"
    }
    assert client.call(update, uuid=uuid, taskid=999, status=100) == {"status": "E_TASK_NOT_FOUND"}
    assert client.call(update, uuid=uuid, taskid=job.taskid, status=100, progress=50) == {
        "status": "OK"
    }
    assert job.status_name == "RUNNING" and job.progress == 50

    report = "archivingmod_quiz_generate_attempt_report"
    params = {
        "uuid": uuid,
        "taskid": job.taskid,
        "attemptid": quiz.attemptids[0],
        "foldernamepattern": "${username}/${attemptid}",
        "filenamepattern": "attempt-${attemptid}",
        "sections": sections("archivingmod_quiz"),
        "attachments": True,
    }
    raw = client.raw(report, params)
    answer = decode_first_json(raw.text)
    assert list(answer) == [
        "attemptid",
        "foldername",
        "filename",
        "report",
        "attachments",
        "status",
    ]
    user = quiz.users[quiz.attempts[0].userid]
    assert (
        answer["foldername"] == f"{user.username}{quiz.attemptids[0]}"
    )  # the driver's swapped sanitiser
    assert len(answer["attachments"]) == 1
    assert client.call(report, **{**params, "foldernamepattern": "a.b"}) == {
        "status": "E_INVALID_FOLDERNAME_PATTERN"
    }
    assert client.call(report, **{**params, "filenamepattern": "a/b"}) == {
        "status": "E_INVALID_FILENAME_PATTERN"
    }
    other = moodle.create_quiz(attempts=1)
    assert client.call(report, **{**params, "attemptid": other.attemptids[0]}) == {
        "status": "E_ATTEMPT_NOT_FOUND"
    }
    assert (
        client.call(report, **{**params, "sections": sections()})["errorcode"] == "invalidparameter"
    )

    metadata = "archivingmod_quiz_get_attempts_metadata"
    # An empty list cannot travel over HTTP at all: Moodle misses the key.
    assert client.call(metadata, uuid=uuid, taskid=job.taskid, attemptids=[])["debuginfo"] == (
        "Missing required key in single structure: attemptids"
    )
    rows = client.call(metadata, uuid=uuid, taskid=job.taskid, attemptids=quiz.attemptids)
    assert rows["status"] == "OK" and [r["attemptid"] for r in rows["attempts"]] == quiz.attemptids

    content = b"v1 archive"
    upload = client.upload(content).json()[0]
    artifact = artifact_params(upload, hashlib.sha256(content).hexdigest())
    process = "archivingmod_quiz_process_uploaded_artifact"
    assert client.call(process, uuid=uuid, taskid=job.taskid, **artifact) == {"status": "OK"}
    assert job.status == 220 and job.artifact == content and not job.token_valid
    assert [s for s, _ in job.statusextras_history] == [100, 100, 220]


def test_archivingmod_quiz_checksum_mismatch(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, protocol="archivingmod_quiz")
    moodle.register_job(job, "v1-task")
    client = WsClient(moodle, job.token)
    upload = client.upload(b"abc").json()[0]
    answer = client.call(
        "archivingmod_quiz_process_uploaded_artifact",
        uuid="v1-task",
        taskid=job.taskid,
        **artifact_params(upload, "0" * 64),
    )
    assert answer == {"status": "E_CHECKSUM_MISMATCH"}
    assert job.status == 250 and job.status_name == "FAILED" and not job.token_valid
