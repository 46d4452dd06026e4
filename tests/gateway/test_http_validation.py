"""The HTTP layer's validation: exact status codes and messages, and hostile inputs.

The parser's own rules are covered by tests/unit/test_request_parsing.py; here every
rule is checked through HTTP, and every refusal must leave nothing behind.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.gateway.conftest import FakeProbe
from tests.gateway.fakekube import FakeKube
from tests.unit.request_bodies import BASE, v1_body, v7_body

NOT_JSON = "Request payload must be JSON."
INVALID = "Invalid request."
MISSING = "JSON is missing a required parameter."
STRUCTURE = "JSON is technically incomplete or missing a required parameter."
BAD_BASE = "JSON data is invalid: Base URL is invalid"


@pytest.fixture(autouse=True)
def nothing_created(kube: FakeKube, probe: FakeProbe) -> Iterator[None]:
    yield
    assert kube.archivejobs == {} and kube.secrets == {} and kube.events == []


def post_raw(client: TestClient, content: bytes, content_type: str | None) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/archive", content=content, headers=headers)


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return str(body["error"])


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json", "text/json"]
)
def test_content_type_must_be_json(client: TestClient, content_type: str | None) -> None:
    assert error_of(post_raw(client, b"{}", content_type), 400) == NOT_JSON


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[1,", b"{'a': 1}", b"NaN", b'{"a": Infinity}', b"\xff\xfe\x00", b"[" * 100_000,
     b"1" * 5000],
)
def test_malformed_json_is_an_invalid_request(client: TestClient, content: bytes) -> None:
    assert error_of(post_raw(client, content, "application/json"), 400) == INVALID


def test_json_variants_of_the_content_type_are_accepted(client: TestClient, probe: FakeProbe):
    response = post_raw(client, b"[]", "application/vnd.moodle+json; charset=utf-8")
    assert error_of(response, 400) == STRUCTURE


@pytest.mark.parametrize("body", [[], "x", 7, None, True, [v7_body()]])
def test_top_level_must_be_an_object(client: TestClient, body: Any) -> None:
    response = post_raw(client, json.dumps(body).encode(), "application/json")
    assert error_of(response, 400) == STRUCTURE


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/archive", v7_body(api_version=6), "API version mismatch. Expected: 7, Got: 6. "
         "Please update your quiz-archive-worker!"),
        ("/archive", v7_body(api_version=10**30), "API version mismatch. Expected: 7, Got: "
         f"{10**30}. Please update your quiz-archive-worker!"),
        ("/archive", v7_body(api_version="7"), "API version must be an integer"),
        ("/archive", v7_body(api_version=7.0), "API version must be an integer"),
        ("/archive/archivingmod_quiz", v7_body(), "API version mismatch. Expected: 1, Got: 7. "
         "Please update your quiz-archive-worker!"),
        ("/archive/quiz_archiver", v1_body(), "API version mismatch. Expected: 7, Got: 1. "
         "Please update your quiz-archive-worker!"),
    ],
)
def test_api_versions(client: TestClient, path: str, body: Any, message: str) -> None:
    assert error_of(client.post(path, json=body), 400) == "JSON data is invalid: " + message


def test_missing_api_version(client: TestClient) -> None:
    body = v7_body()
    del body["api_version"]
    assert error_of(client.post("/archive", json=body), 400) == (
        "JSON data is invalid: API version missing in request payload"
    )


def test_missing_key(client: TestClient) -> None:
    body = v7_body()
    del body["task_moodle_backups"]
    assert error_of(client.post("/archive", json=body), 400) == MISSING


def _attempts(**overrides: Any) -> dict[str, Any]:
    attempts = dict(v7_body()["task_archive_quiz_attempts"])
    attempts.update(overrides)
    return attempts


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        # wrong JSON types
        (v7_body(courseid="9"), 400, "JSON data is invalid: Either the 3-tuple courseid, cmid "
         "and quizid or taskid must be given to create an archive request."),
        (v7_body(moodle_base_url=["x"]), 400, STRUCTURE),
        (v7_body(wstoken=123), 400, STRUCTURE),
        (v7_body(task_archive_quiz_attempts=_attempts(attemptids=["24"])), 400,
         "JSON data is invalid: Attempt ID list is invalid."),
        (v7_body(task_archive_quiz_attempts=_attempts(keep_html_files="true")), 400,
         "JSON data is invalid: Keep HTML files flag is invalid."),
        (v7_body(task_archive_quiz_attempts=_attempts(sections=[1])), 400, STRUCTURE),
        (v7_body(task_moodle_backups={"a": 1}), 400, STRUCTURE),
        (v7_body(task_archive_quiz_attempts="yes"), 400, STRUCTURE),
        # schemes and hosts
        (v7_body(moodle_base_url="file:///etc/passwd"), 400, BAD_BASE),
        (v7_body(moodle_base_url="javascript:alert(1)"), 400, BAD_BASE),
        (v7_body(moodle_base_url="ftp://moodle.example"), 400, BAD_BASE),
        (v7_body(moodle_base_url="https://user:pw@moodle.example"), 400, BAD_BASE),
        (v7_body(moodle_ws_url="https://evil.example/webservice/rest/server.php"), 400,
         "JSON data is invalid: Webservice REST base URL is invalid"),
        (v7_body(moodle_upload_url="javascript:alert(1)//webservice/upload.php"), 400,
         "JSON data is invalid: Webservice upload URL is invalid"),
        # names: path traversal, NUL
        (v7_body(archive_filename="../../etc/passwd"), 400,
         "JSON data is invalid: Archive filename must not contain a path."),
        (v7_body(archive_filename="..\\..\\x"), 400,
         "JSON data is invalid: Archive filename contains forbidden characters."),
        (v7_body(archive_filename="a\u0000b"), 400,
         "JSON data is invalid: Archive filename contains forbidden characters."),
        (v7_body(archive_filename=""), 400, "JSON data is invalid: Archive filename is invalid."),
        (v7_body(task_archive_quiz_attempts=_attempts(foldername_pattern="a\u0000b")), 400,
         "JSON data is invalid: Folder name pattern is invalid."),
    ],
)
def test_invalid_and_hostile_bodies(
    client: TestClient, probe: FakeProbe, body: Any, status: int, message: str
) -> None:
    assert error_of(client.post("/archive", json=body), status) == message
    assert probe.calls == []


def _backup(**overrides: Any) -> list[dict[str, Any]]:
    backup = dict(v7_body()["task_moodle_backups"][0])
    backup.update(overrides)
    return [backup]


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        ({"filename": "../../../etc/cron.d/x"}, "Moodle backup filename is invalid."),
        ({"filename": "a\u0000.mbz"}, "Moodle backup filename is invalid."),
        ({"file_download_url": "https://evil.example/webservice/pluginfile.php/1/x.mbz"},
         "Moodle backup file download URL is invalid."),
        ({"file_download_url": f"{BASE}/webservice/pluginfile.php/1/../../../admin/x"},
         "Moodle backup file download URL is invalid."),
        ({"file_download_url": f"{BASE}/webservice/pluginfile.php/1/%2e%2e/%2e%2e/admin"},
         "Moodle backup file download URL is invalid"),
        ({"file_download_url": "file:///etc/passwd"},
         "Moodle backup file download URL is invalid."),
    ],
)
def test_hostile_backups(client: TestClient, backup: dict[str, Any], message: str) -> None:
    body = v7_body(task_moodle_backups=_backup(**backup))
    assert error_of(client.post("/archive", json=body), 400) == "JSON data is invalid: " + message


def _at(base: str, body: Callable[..., dict[str, Any]] = v7_body) -> dict[str, Any]:
    if body is v1_body:
        result = v1_body()
        result["moodle_api"].update(
            base_url=base,
            webservice_url=f"{base}/webservice/rest/server.php",
            upload_url=f"{base}/webservice/upload.php",
        )
        return result
    return v7_body(
        moodle_base_url=base,
        moodle_ws_url=f"{base}/webservice/rest/server.php",
        moodle_upload_url=f"{base}/webservice/upload.php",
        task_moodle_backups=None,
    )


NOT_ALLOWED = "JSON data is invalid: Moodle base URL is not allowed by this archive worker."
PRIVATE = (
    "JSON data is invalid: Moodle base URL points to a loopback, private or link-local "
    "address, which this archive worker does not allow."
)


@pytest.mark.parametrize(
    "base",
    [
        "https://other.example",
        "http://moodle.example",
        "https://moodle.example:8443",
        "https://moodle.example.attacker.example",
        "http://127.0.0.1",
        "http://localhost:8080",
        "http://169.254.169.254",
        "http://2130706433",
        "http://[::1]",
    ],
)
def test_base_url_must_be_on_the_allow_list(client: TestClient, probe: FakeProbe, base: str):
    assert error_of(client.post("/archive", json=_at(base)), 403) == NOT_ALLOWED
    response = client.post("/archive/archivingmod_quiz", json=_at(base, v1_body))
    assert error_of(response, 403) == NOT_ALLOWED
    assert probe.calls == []


def test_derived_urls_must_stay_on_the_allowed_moodle(make_client: Callable[..., TestClient]):
    client = make_client(allowed_moodle_urls="https://moodle.example/moodle")
    body = _at("https://moodle.example/moodle")
    body["moodle_ws_url"] = "https://moodle.example/moodle/../webservice/rest/server.php"
    assert error_of(client.post("/archive", json=body), 400) == (
        "JSON data is invalid: Webservice REST base URL is invalid"
    )
    body = _at("https://moodle.example/moodle")
    body["moodle_upload_url"] = "https://moodle.example/elsewhere/webservice/upload.php"
    assert error_of(client.post("/archive", json=body), 403) == (
        "JSON data is invalid: Webservice upload URL is not allowed by this archive worker."
    )


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:8080", "http://localhost", "http://10.0.0.7", "http://[fd00::1]",
             "http://169.254.169.254", "http://2130706433", "http://0x7f.1"],
)
def test_open_mode_refuses_loopback_and_private_hosts(
    make_client: Callable[..., TestClient], base: str
) -> None:
    client = make_client(allowed_moodle_urls="", allow_any_moodle=True)
    assert error_of(client.post("/archive", json=_at(base)), 403) == PRIVATE


def test_open_mode_refuses_names_of_this_machine(make_client: Callable[..., TestClient]) -> None:
    host = socket.gethostname().lower()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, 80)}
    except OSError:
        pytest.skip("this machine's name does not resolve")
    client = make_client(allowed_moodle_urls="", allow_any_moodle=True)
    if not addresses:
        pytest.skip("no addresses")
    assert error_of(client.post("/archive", json=_at(f"http://{host}")), 403) == PRIVATE


def test_loopback_is_fine_when_the_admin_allows_it(
    make_client: Callable[..., TestClient], kube: FakeKube, probe: FakeProbe
) -> None:
    listed = make_client(allowed_moodle_urls="http://127.0.0.1:8080")
    assert listed.post("/archive", json=_at("http://127.0.0.1:8080")).status_code == 200
    anywhere = make_client(allowed_moodle_urls="", allow_any_moodle=True,
                           allow_private_moodle_hosts=True)
    assert anywhere.post("/archive", json=_at("http://localhost:9")).status_code == 200
    kube.archivejobs.clear()
    kube.secrets.clear()
    kube.events.clear()


def test_ten_megabyte_bodies_get_413(client: TestClient, probe: FakeProbe) -> None:
    big = b'{"api_version": 7, "pad": "' + b"x" * 10_000_000 + b'"}'
    message = error_of(post_raw(client, big, "application/json"), 413)
    assert message.startswith("Request payload is too large")
    # Without Content-Length (chunked), the limit holds while reading.
    chunked = client.post(
        "/archive",
        content=(big[i : i + 65536] for i in range(0, len(big), 65536)),
        headers={"content-type": "application/json"},
    )
    assert error_of(chunked, 413) == message
    assert probe.calls == []


def test_oversized_lists_are_refused_before_anything_is_stored(client: TestClient) -> None:
    body = v7_body(task_archive_quiz_attempts=_attempts(attemptids=list(range(1, 100_002))))
    assert error_of(client.post("/archive", json=body), 400) == (
        "JSON data is invalid: Attempt ID list is invalid."
    )
    body = v7_body(task_moodle_backups=_backup() * 17)
    assert error_of(client.post("/archive", json=body), 400).startswith("JSON data is invalid: ")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/archive", 405),
        ("PUT", "/archive", 405),
        ("POST", "/archive/", 404),
        ("POST", "/archive/unknown_plugin", 404),
        ("POST", "/archive/%2e%2e/archive", 404),
        ("POST", "/ARCHIVE", 404),
        ("GET", "/nothing-here", 404),
    ],
)
def test_unknown_routes_answer_with_an_error_body(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, json=v7_body())
    assert response.status_code in (status, 404)
    error_of(response, response.status_code)
