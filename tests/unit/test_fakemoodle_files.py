"""upload.php and pluginfile.php of the fake Moodle."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from tests.fakemoodle import FakeMoodle
from tests.fakemoodle.testing import WsClient, decode_first_json, report_params

JOBID = "6c1e2b10-0b1e-11f1-9a7e-0242ac120002"
AJAX_ERROR_KEYS = ["error", "errorcode", "stacktrace", "debuginfo", "reproductionlink"]


@pytest.fixture
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


@pytest.fixture
def job(moodle: FakeMoodle):  # type: ignore[no-untyped-def]
    quiz = moodle.create_quiz(attempts=2, attachments_per_attempt=2)
    job = moodle.create_job(quiz, backups=("quiz", "course"))
    moodle.register_job(job, JOBID)
    return job


def test_upload_reply_shape_matches_moodle(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    content = b"PK\x05\x06" + b"\x00" * 18
    response = WsClient(moodle, job.token).upload(content, "quiz-archive-QA.zip")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert '"filepath":"\\/"' in response.text  # PHP escapes slashes
    (entry,) = response.json()
    assert list(entry) == [
        "component",
        "contextid",
        "userid",
        "filearea",
        "filename",
        "filepath",
        "itemid",
        "license",
        "author",
        "source",
        "filesize",
    ]
    assert (
        entry["component"] == "user" and entry["filearea"] == "draft" and entry["filepath"] == "/"
    )
    assert entry["userid"] == "3" and isinstance(entry["userid"], str)
    assert (
        isinstance(entry["contextid"], int)
        and isinstance(entry["itemid"], int)
        and entry["itemid"] > 0
    )
    assert entry["filename"] == "quiz-archive-QA.zip" and entry["filesize"] == len(content)
    assert entry["source"] == 'O:8:"stdClass":1:{s:6:"source";s:19:"quiz-archive-QA.zip";}'
    assert [c.endpoint for c in moodle.calls_for(JOBID)] == ["upload"]


def test_upload_same_name_twice_into_one_itemid(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    client = WsClient(moodle, job.token)
    first = client.upload(b"one").json()[0]
    second = client.upload(b"two", itemid=first["itemid"]).json()[0]
    assert second == {
        "filename": "archive.zip",
        "errortype": "filenameexist",
        "error": "File name already exists: archive.zip",
    }


def test_upload_errors(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    bad = WsClient(moodle, "0" * 32).upload(b"x")
    assert bad.status_code == 200
    body = bad.json()
    assert list(body) == AJAX_ERROR_KEYS
    assert (
        body["errorcode"] == "invalidtoken" and body["error"] == "Invalid token - token not found"
    )
    missing = requests.post(moodle.upload_url, files={"file_1": ("a.zip", b"x")}, timeout=10).json()
    assert (
        missing["errorcode"] == "missingparam"
        and missing["error"] == "A required parameter (token) was missing"
    )


def test_upload_size_limits(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    client = WsClient(moodle, job.token)
    moodle.faults.max_upload_bytes = 100
    assert client.upload(b"x" * 101).json() == [
        {
            "filename": "archive.zip",
            "errortype": "fileoversized",
            "error": "This file is bigger than the maximum size",
        }
    ]
    assert "errortype" not in client.upload(b"x" * 100, "small.zip").json()[0]
    moodle.faults.upload_max_filesize = 50
    assert client.upload(b"x" * 60, "ini.zip").json()["errorcode"] == "upload_error_ini_size"
    moodle.faults.upload_max_filesize = None
    moodle.faults.post_max_size = 1000
    assert client.upload(b"x" * 2000, "post.zip").json()["errorcode"] == "missingparam"


def test_backup_download_head_and_get(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    for entry in job.request_body["task_moodle_backups"]:
        url = entry["file_download_url"]
        assert url.startswith(moodle.base_url + "/webservice/pluginfile.php/")
        head = requests.head(url, params={"token": job.token}, allow_redirects=True, timeout=10)
        assert head.status_code == 200
        assert head.headers["content-type"] == "application/vnd.moodle.backup"
        size = int(head.headers["content-length"])
        get = requests.get(url, params={"token": job.token, "forcedownload": 1}, timeout=10)
        assert (
            get.status_code == 200 and len(get.content) == size and get.content[:2] == b"\x1f\x8b"
        )
        assert get.headers["content-disposition"].startswith("attachment;")


def test_download_errors_are_small_json_objects(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    url = job.request_body["task_moodle_backups"][0]["file_download_url"]
    wrong = requests.get(url, params={"token": "0" * 32, "forcedownload": 1}, timeout=10)
    assert wrong.status_code == 200 and len(wrong.content) < 10240
    assert list(wrong.json()) == AJAX_ERROR_KEYS and wrong.json()["errorcode"] == "invalidtoken"
    missing = requests.get(url + "x", params={"token": job.token}, timeout=10)
    assert missing.status_code == 404 and missing.json()["errorcode"] == "filenotfound"
    no_token = requests.get(url, timeout=10)
    assert no_token.json()["errorcode"] == "missingparam"


def test_backups_vanish_when_the_job_completes(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    other = moodle.create_job(
        job.quiz
    )  # another job's token may still download (Moodle does not scope files)
    url = job.request_body["task_moodle_backups"][0]["file_download_url"]
    assert requests.get(url, params={"token": other.token}, timeout=10).status_code == 200
    WsClient(moodle, job.token).call(
        "quiz_archiver_update_job_status", jobid=JOBID, status="FAILED"
    )
    gone = requests.get(url, params={"token": other.token}, timeout=10)
    assert gone.status_code == 404 and gone.json()["errorcode"] == "filenotfound"


def _attachments(moodle: FakeMoodle, job) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    client = WsClient(moodle, job.token)
    params = report_params(job, job.quiz, job.quiz.attemptids[0])
    return decode_first_json(client.raw("quiz_archiver_generate_attempt_report", params).text)[
        "attachments"
    ]


def test_attachment_faults(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    moodle.faults.attachment_bad_hash = True
    item = _attachments(moodle, job)[0]
    content = requests.get(
        str(item["downloadurl"]), params={"token": job.token}, timeout=10
    ).content
    assert hashlib.sha1(content).hexdigest() != item["contenthash"]  # noqa: S324
    moodle.faults.attachment_bad_hash = False
    moodle.faults.attachment_oversize_bytes = 3_000_000
    item = _attachments(moodle, job)[0]
    assert item["filesize"] == 3_000_000
    response = requests.get(str(item["downloadurl"]), params={"token": job.token}, timeout=30)
    assert len(response.content) == 3_000_000
    assert hashlib.sha1(response.content).hexdigest() == item["contenthash"]  # noqa: S324


def test_attachment_urls_use_the_public_wwwroot() -> None:
    with FakeMoodle(public_url="http://moodle.public.invalid") as moodle:
        quiz = moodle.create_quiz(attempts=1, attachments_per_attempt=1)
        job = moodle.create_job(quiz, backups=("quiz",))
        moodle.register_job(job, JOBID)
        assert job.request_body["moodle_base_url"] == moodle.base_url
        assert job.request_body["task_moodle_backups"][0]["file_download_url"].startswith(
            moodle.base_url
        )
        item = _attachments(moodle, job)[0]
        assert str(item["downloadurl"]).startswith(
            "http://moodle.public.invalid/webservice/pluginfile.php/"
        )
        assert '<base href="http://moodle.public.invalid">' in moodle.report_html(
            quiz.attemptids[0]
        )
