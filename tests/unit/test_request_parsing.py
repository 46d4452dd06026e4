"""Every validation rule of spec 2.2/2.3 and 9.3 with its exact message."""

from __future__ import annotations

from typing import Any

import pytest

from moodle_archive_job.request_parsing import (
    MSG_MISSING,
    MSG_STRUCTURE,
    RequestRejected,
    detect_protocol,
    parse_archive_request,
)
from moodle_archive_job.task import PaperFormat, Protocol
from tests.unit.request_bodies import BASE, TOKEN, v1_body, v7_body

V7 = Protocol.QUIZ_ARCHIVER_V7
V1 = Protocol.ARCHIVINGMOD_QUIZ_V1


def rejected(body: Any, protocol: Protocol = V7) -> str:
    with pytest.raises(RequestRejected) as info:
        parse_archive_request(body, protocol)
    assert info.value.status_code == 400
    return info.value.message


def test_v7_body_is_normalised() -> None:
    parsed = parse_archive_request(v7_body(), V7)
    task = parsed.task
    assert parsed.token.get_secret_value() == TOKEN
    assert TOKEN not in task.model_dump_json()
    assert (task.courseid, task.cmid, task.quizid, task.taskid) == (9, 23, 12, None)
    assert task.attempts is not None
    assert task.attempts.attemptids == [24, 25, 23]
    assert task.attempts.fetch_attachments is True
    assert task.attempts.section_flags()["quiz_grade"] == 1
    assert task.backups[0].filename.endswith(".mbz")
    assert task.archive_name == "quiz-archive-QA-9-Reference Quiz-12-2026-01-01_12-00-00.zip"


def test_v1_body_is_normalised() -> None:
    task = parse_archive_request(v1_body(), V1).task
    assert task.protocol is V1 and task.taskid == 5 and task.courseid is None
    assert task.attempts is not None and task.attempts.attemptids == [3, 4]
    assert task.backups == []


def test_detect_protocol() -> None:
    assert detect_protocol(v7_body()) is V7
    assert detect_protocol(v1_body()) is V1


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (8, "API version mismatch. Expected: 7, Got: 8. Please update your quiz-archive-worker!"),
        ("7", "API version must be an integer"),
        (7.0, "API version must be an integer"),
        (True, "API version must be an integer"),
    ],
)
def test_api_version_rules(version: Any, message: str) -> None:
    assert rejected(v7_body(api_version=version)) == "JSON data is invalid: " + message


def test_api_version_missing() -> None:
    body = v7_body()
    del body["api_version"]
    assert rejected(body) == "JSON data is invalid: API version missing in request payload"


def test_v1_version_mismatch_names_expected_one() -> None:
    assert rejected(v1_body(api_version=7), V1) == (
        "JSON data is invalid: API version mismatch. Expected: 1, Got: 7. "
        "Please update your quiz-archive-worker!"
    )


@pytest.mark.parametrize(
    "key",
    ["moodle_base_url", "moodle_ws_url", "moodle_upload_url", "wstoken", "courseid", "cmid",
     "quizid", "archive_filename", "task_archive_quiz_attempts", "task_moodle_backups"],
)
def test_every_top_level_key_is_required(key: str) -> None:
    body = v7_body()
    del body[key]
    assert rejected(body) == MSG_MISSING


@pytest.mark.parametrize(
    "key",
    ["attemptids", "fetch_metadata", "sections", "paper_format", "keep_html_files",
     "foldername_pattern", "filename_pattern", "image_optimize"],
)
def test_every_attempts_key_is_required(key: str) -> None:
    body = v7_body()
    del body["task_archive_quiz_attempts"][key]
    assert rejected(body) == MSG_MISSING


def test_sections_need_attachments_key() -> None:
    body = v7_body()
    del body["task_archive_quiz_attempts"]["sections"]["attachments"]
    assert rejected(body) == MSG_MISSING


@pytest.mark.parametrize("payload", [[], "text", 7, None])
def test_non_object_payload(payload: Any) -> None:
    assert rejected(payload) == MSG_STRUCTURE


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("moodle_base_url", "", "Base URL is required"),
        ("moodle_base_url", "ftp://moodle.example", "Base URL is invalid"),
        ("moodle_base_url", "https://moodle.example/index.php", "Base URL is invalid"),
        ("moodle_base_url", "javascript:alert(1)", "Base URL is invalid"),
        ("moodle_base_url", "file:///etc/passwd", "Base URL is invalid"),
        ("moodle_base_url", "https://user:pw@moodle.example", "Base URL is invalid"),
        ("moodle_base_url", "https://moodle.example/a b", "Base URL is invalid"),
        ("moodle_ws_url", "", "Webservice REST base URL is required"),
        ("moodle_ws_url", f"{BASE}/webservice/soap/server.php",
         "Webservice REST base URL is invalid"),
        ("moodle_ws_url", "https://evil.example/webservice/rest/server.php",
         "Webservice REST base URL is invalid"),
        ("moodle_upload_url", "", "Webservice upload URL is required"),
        ("moodle_upload_url", f"{BASE}/upload.php", "Webservice upload URL is invalid"),
        ("moodle_upload_url", "http://moodle.example/webservice/upload.php",
         "Webservice upload URL is invalid"),
        ("wstoken", "", "wstoken is required"),
        ("wstoken", "abc\nX-Injected: 1", "wstoken is invalid"),
        ("courseid", 0, "Either the 3-tuple courseid, cmid and quizid or taskid must be given to "
         "create an archive request."),
        ("cmid", "23", "Either the 3-tuple courseid, cmid and quizid or taskid must be given to "
         "create an archive request."),
        ("quizid", True, "Either the 3-tuple courseid, cmid and quizid or taskid must be given to "
         "create an archive request."),
        ("archive_filename", "", "Archive filename is invalid."),
        ("archive_filename", "../../etc/passwd", "Archive filename must not contain a path."),
        ("archive_filename", "a/b", "Archive filename must not contain a path."),
        ("archive_filename", "archive.tar", "Archive filename contains forbidden characters."),
        ("archive_filename", "..", "Archive filename contains forbidden characters."),
        ("archive_filename", "nul\0byte", "Archive filename contains forbidden characters."),
        ("archive_filename", "back\\slash", "Archive filename contains forbidden characters."),
        ("archive_filename", "line\nbreak", "Archive filename contains forbidden characters."),
        ("archive_filename", "x" * 251, "Archive filename is invalid."),
        ("archive_filename", 5, "Archive filename is invalid."),
    ],
)
def test_top_level_validation(field: str, value: Any, message: str) -> None:
    assert rejected(v7_body(**{field: value})) == "JSON data is invalid: " + message


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("attemptids", [], "Attempt ID list is invalid."),
        ("attemptids", "1,2", "Attempt ID list is invalid."),
        ("attemptids", [1, "2"], "Attempt ID list is invalid."),
        ("attemptids", [1, 1], "Attempt ID list is invalid."),
        ("attemptids", [0], "Attempt ID list is invalid."),
        ("sections", {"attachments": "1", "header": "yes"}, "Attempt report sections are invalid."),
        ("sections", {"attachments": "1", "../x": "1"}, "Attempt report sections are invalid."),
        ("fetch_metadata", 1, "Fetch metadata flag is invalid."),
        ("keep_html_files", "true", "Keep HTML files flag is invalid."),
        ("paper_format", "B5", "Paper format is invalid."),
        ("paper_format", 4, "Paper format is invalid."),
        ("foldername_pattern", "", "Folder name pattern is invalid."),
        ("filename_pattern", None, "Filename pattern is invalid."),
        ("image_optimize", {"width": 0, "height": 1, "quality": 1},
         "Image optimization width is invalid."),
        ("image_optimize", {"width": 1, "height": 1.5, "quality": 1},
         "Image optimization height is invalid."),
        ("image_optimize", {"width": 1, "height": 1, "quality": 101},
         "Image optimization quality is invalid."),
        ("image_optimize", "yes", "Image optimization flag is invalid."),
    ],
)
def test_attempts_validation(field: str, value: Any, message: str) -> None:
    body = v7_body()
    body["task_archive_quiz_attempts"][field] = value
    assert rejected(body) == "JSON data is invalid: " + message


def test_sections_must_be_object() -> None:
    body = v7_body()
    body["task_archive_quiz_attempts"]["sections"] = ["attachments"]
    assert rejected(body) == MSG_STRUCTURE


def test_image_optimize_keys_required() -> None:
    body = v7_body()
    body["task_archive_quiz_attempts"]["image_optimize"] = {"width": 1, "height": 1}
    assert rejected(body) == MSG_MISSING


@pytest.mark.parametrize("value", ["Letter", "LETTER", "legal", "Tabloid", "ledger", "a5"])
def test_paper_formats_case_insensitive(value: str) -> None:
    body = v7_body()
    body["task_archive_quiz_attempts"]["paper_format"] = value
    task = parse_archive_request(body, V7).task
    assert task.attempts is not None
    assert task.attempts.paper_format is PaperFormat.parse(value)


def test_forced_off_sections_as_int_zero_are_forwarded() -> None:
    body = v7_body()
    body["task_archive_quiz_attempts"]["sections"]["history"] = 0
    body["task_archive_quiz_attempts"]["sections"]["attachments"] = "0"
    task = parse_archive_request(body, V7).task
    assert task.attempts is not None
    assert task.attempts.sections["history"] == 0
    assert task.attempts.section_flags()["history"] == 0
    assert task.attempts.fetch_attachments is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backupid", "", "Moodle backup ID is invalid."),
        ("backupid", "../x", "Moodle backup ID is invalid."),
        ("filename", "", "Moodle backup filename is invalid."),
        ("filename", "../evil.mbz", "Moodle backup filename is invalid."),
        ("filename", "..", "Moodle backup filename is invalid."),
        ("filename", "a\0.mbz", "Moodle backup filename is invalid."),
        ("file_download_url", "https://evil.example/webservice/pluginfile.php/1/x.mbz",
         "Moodle backup file download URL is invalid."),
        ("file_download_url", "https://moodle.example.evil.com/webservice/pluginfile.php/1/x.mbz",
         "Moodle backup file download URL is invalid."),
        ("file_download_url", f"{BASE}/webservice/pluginfile.php/../../admin/x.mbz",
         "Moodle backup file download URL is invalid."),
        ("file_download_url", f"{BASE}/admin/x.mbz", "Moodle backup file download URL is invalid."),
    ],
)
def test_backup_validation(field: str, value: Any, message: str) -> None:
    body = v7_body()
    body["task_moodle_backups"][0][field] = value
    assert rejected(body) == "JSON data is invalid: " + message


def test_null_tasks_are_accepted() -> None:
    task = parse_archive_request(
        v7_body(task_archive_quiz_attempts=None, task_moodle_backups=None), V7
    ).task
    assert task.attempts is None and task.backups == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("taskid",), MSG_MISSING),
        (("moodle_api", "wstoken"), MSG_MISSING),
        (("job", "report_sections"), MSG_MISSING),
        (("job", "fetch_attachments"), MSG_MISSING),
    ],
)
def test_v1_required_keys(path: tuple[str, ...], message: str) -> None:
    body = v1_body()
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    assert rejected(body, V1) == message


def test_v1_taskid_must_be_positive() -> None:
    assert rejected(v1_body(taskid=0), V1).startswith("JSON data is invalid: Either the 3-tuple")
