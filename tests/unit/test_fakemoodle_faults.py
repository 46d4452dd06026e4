"""Fault and latency injection, page resources and the login trap of the fake Moodle."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.fakemoodle import FakeMoodle, FaultConfig
from tests.fakemoodle.testing import WsClient, report_params

JOBID = "9d0c7a34-0b1e-11f1-9a7e-0242ac120002"


@pytest.fixture
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


@pytest.fixture
def job(moodle: FakeMoodle):  # type: ignore[no-untyped-def]
    quiz = moodle.create_quiz(attempts=2)
    job = moodle.create_job(quiz, backups=("quiz",))
    moodle.register_job(job, JOBID)
    return job


def test_report_latency_does_not_block_other_calls(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    moodle.faults.report_latency = 1.0
    client = WsClient(moodle, job.token)
    params = report_params(job, job.quiz, job.quiz.attemptids[0])
    done: dict[str, float] = {}

    def slow() -> None:
        started = time.monotonic()
        WsClient(moodle, job.token).call("quiz_archiver_generate_attempt_report", **params)
        done["report"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert client.call("quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING") == {
        "status": "OK"
    }
    quick = time.monotonic() - started
    thread.join()
    assert done["report"] >= 1.0
    assert quick < 0.5


def test_latency_is_also_a_constructor_option() -> None:
    with FakeMoodle(
        report_latency=0.3, faults=FaultConfig(latency={"quiz_archiver_get_backup_status": 0.2})
    ) as moodle:
        assert moodle.faults.report_latency == 0.3
        assert moodle.faults.latency_for(["quiz_archiver_get_backup_status", "rest"]) == 0.2


def test_fail_next_gives_http_errors_then_recovers(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    moodle.faults.fail_next("quiz_archiver_update_job_status", 2, status=503)
    client = WsClient(moodle, job.token)
    pending = []
    codes = []
    for _ in range(3):
        pending.append(moodle.faults.failures_pending("quiz_archiver_update_job_status"))
        codes.append(client.raw(
            "quiz_archiver_update_job_status", {"jobid": JOBID, "status": "RUNNING"}
        ).status_code)  # fmt: skip
    assert codes == [503, 503, 200]
    assert pending == [2, 1, 0]
    assert [c.fault for c in moodle.ws_calls()][-3:] == ["http:503", "http:503", None]
    moodle.faults.fail_next("upload", 1)
    assert client.upload(b"x").status_code == 500
    assert client.upload(b"x").status_code == 200
    url = job.request_body["task_moodle_backups"][0]["file_download_url"]
    moodle.faults.fail_next("pluginfile:backup", 1, status=502)
    assert requests.get(url, params={"token": job.token}, timeout=10).status_code == 502
    assert requests.get(url, params={"token": job.token}, timeout=10).status_code == 200


def test_a_lost_answer_is_processed_but_answered_with_an_error(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    moodle.faults.lose_answer_next("quiz_archiver_update_job_status", status=504)
    client = WsClient(moodle, job.token)
    answer = client.raw("quiz_archiver_update_job_status", {"jobid": JOBID, "status": "FAILED"})
    assert answer.status_code == 504 and "FAILED" not in answer.text
    assert moodle.job(JOBID).status_name == "FAILED" and not moodle.job(JOBID).token_valid
    assert moodle.ws_calls()[-1].fault == "lost-answer:504"
    again = client.raw("quiz_archiver_update_job_status", {"jobid": JOBID, "status": "FAILED"})
    assert again.status_code == 200 and again.json()["errorcode"] == "invalidtoken"


def test_down_refuse_and_up_on_the_same_port(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    client = WsClient(moodle, job.token)
    moodle.faults.down()
    with pytest.raises(requests.ConnectionError):
        client.raw("quiz_archiver_update_job_status", {"jobid": JOBID, "status": "RUNNING"})
    moodle.faults.up()
    assert client.call("quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING") == {
        "status": "OK"
    }


def test_down_hang_then_up(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    moodle.faults.down("hang")
    with pytest.raises(requests.ReadTimeout):
        requests.get(moodle.ws_url, params={"wstoken": job.token}, timeout=(2, 0.5))
    moodle.faults.up()
    assert WsClient(moodle, job.token).call(
        "quiz_archiver_update_job_status", jobid=JOBID, status="X"
    ) == {"status": "OK"}


def test_mathjax_is_served_and_can_be_broken(moodle: FakeMoodle) -> None:
    if not moodle.mathjax_available(3):
        pytest.skip("MathJax not installed (make setup)")
    url = f"{moodle.base_url}/lib/mathjax3/es5/tex-mml-chtml.js"
    ok = requests.get(url, timeout=10)
    assert (
        ok.status_code == 200
        and "javascript" in ok.headers["content-type"]
        and len(ok.content) > 100_000
    )
    assert (
        requests.get(
            f"{moodle.base_url}/lib/mathjax3/../../../../etc/passwd", timeout=10
        ).status_code
        == 404
    )
    moodle.faults.mathjax = "missing"
    assert requests.get(url, timeout=10).status_code == 404
    moodle.faults.mathjax = "hang"
    with pytest.raises(requests.ReadTimeout):
        requests.get(url, timeout=(2, 0.5))
    moodle.faults.mathjax = None
    assert requests.get(url, timeout=10).status_code == 200


@pytest.mark.parametrize("version", [2, 3, 4])
def test_all_mathjax_versions_are_available(moodle: FakeMoodle, version: int) -> None:
    if moodle.mathjax_root is None:
        pytest.skip("MathJax not installed (make setup)")
    assert moodle.mathjax_available(version)
    quiz = moodle.create_quiz(attempts=1, mathjax_version=version)
    html = moodle.report_html(quiz.attemptids[0])
    path = {
        2: "/lib/mathjax2/MathJax.js",
        3: "/lib/mathjax3/es5/tex-mml-chtml.js",
        4: "/lib/mathjax4/tex-mml-chtml.js",
    }
    assert moodle.wwwroot + path[version] in html
    script = path[version].split("?")[0]
    assert requests.get(moodle.base_url + script, timeout=10).status_code == 200


def test_never_ready_page_configuration(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    normal = moodle.report_html(quiz.attemptids[0])
    moodle.faults.mathjax = "never_ready"
    stalled = moodle.report_html(quiz.attemptids[0])
    assert "defaultPageReady" in normal and "defaultPageReady" not in stalled
    assert "return new Promise(function () {});" in stalled


def test_page_resources_and_login_trap(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1, login_redirect=True)
    html = moodle.report_html(quiz.attemptids[0])
    css = requests.get(f"{moodle.base_url}/theme/styles.php/boost/1795832315_1/all", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "/theme/styles.php/boost/" in html
    assert "/lib/javascript.php/" in html and "fakemoodle/ajax.js" in html
    script = requests.get(
        f"{moodle.base_url}/lib/javascript.php/1795832315/lib/fakemoodle/ajax.js", timeout=10
    )
    assert 'window.location = URL.relativeUrl("/login/index.php")' in script.text
    assert requests.get(f"{moodle.base_url}/lib/ajax/service.php", timeout=10).json()[
        "errorcode"
    ] == ("servicerequireslogin")
    assert moodle.login_requests == []
    assert "Log in" in requests.get(f"{moodle.base_url}/login/index.php", timeout=10).text
    assert [r.path for r in moodle.login_requests] == ["/login/index.php"]


def test_long_get_request_lines_are_refused(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    params = {
        "jobid": JOBID,
        "courseid": 1,
        "cmid": 1,
        "quizid": 1,
        "attemptids": list(range(10_000, 11_500)),
    }
    response = WsClient(moodle, job.token).raw("quiz_archiver_get_attempts_metadata", params)
    assert response.status_code == 414


def test_clear_removes_every_fault(moodle: FakeMoodle, job) -> None:  # type: ignore[no-untyped-def]
    faults = moodle.faults
    faults.report_latency = 5
    faults.fail_next("rest", 3)
    faults.max_upload_bytes = faults.post_max_size = 1
    faults.mathjax, faults.attachment_bad_hash = "hang", True
    faults.down()
    faults.clear()
    assert faults.latency == {} and faults.is_down is None and faults.mathjax is None
    assert faults.max_upload_bytes is None and faults.post_max_size is None
    client = WsClient(moodle, job.token)
    assert client.call("quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING") == {
        "status": "OK"
    }
    assert "errortype" not in client.upload(b"abc").json()[0]
