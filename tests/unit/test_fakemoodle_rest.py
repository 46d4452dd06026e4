"""The fake Moodle's REST server and quiz_archiver functions, exercised over HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
import requests

from tests.fakemoodle import FakeMoodle
from tests.fakemoodle.testing import WsClient, artifact_params, decode_first_json, report_params

JOBID = "3f2a5c9e-0b1d-11f1-9a7e-0242ac120002"
PROBE_ANSWER = (
    '{"exception":"core\\\\exception\\\\invalid_parameter_exception","errorcode":"invalidparameter",'
    '"message":"Invalid parameter value detected",'
    '"debuginfo":"Missing required key in single structure: jobid"}'
)


@pytest.fixture
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake


@pytest.fixture
def setup(moodle: FakeMoodle):  # type: ignore[no-untyped-def]
    quiz = moodle.create_quiz(attempts=3, attachments_per_attempt=2)
    job = moodle.create_job(quiz, backups=("quiz",))
    moodle.register_job(job, JOBID)
    return quiz, job, WsClient(moodle, job.token)


# -- transport and authentication ----------------------------------------------------------------


def test_probe_answer_is_byte_for_byte_moodles(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz)
    response = WsClient(moodle, job.token).raw("quiz_archiver_update_job_status")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.text == PROBE_ANSWER


def test_unknown_and_missing_token(moodle: FakeMoodle) -> None:
    for token in ("0" * 32, ""):
        body = WsClient(moodle, token).call("quiz_archiver_update_job_status")
        assert body == {
            "exception": "core\\exception\\moodle_exception",
            "errorcode": "invalidtoken",
            "message": "Invalid token - token not found",
        }
    response = requests.get(
        moodle.ws_url,
        params={"wsfunction": "quiz_archiver_update_job_status", "moodlewsrestformat": "json"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["errorcode"] == "invalidtoken"


def test_unknown_function_and_function_of_another_service(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    client = WsClient(moodle, moodle.create_job(quiz).token)
    unknown = client.call("quiz_archiver_no_such_function")
    assert unknown["errorcode"] == "invalidrecord"
    assert unknown["exception"] == "dml_missing_record_exception"
    assert unknown["message"] == "Can't find data record in database table external_functions."
    for name in ("archivingmod_quiz_update_task_status", "core_webservice_get_site_info"):
        denied = client.call(name)
        assert denied["errorcode"] == "accessexception"
        assert denied["message"] == "Access control exception"
        assert f"Access to the function {name}() is not allowed." in denied["debuginfo"]
    missing = client.call(None)
    assert (
        missing["errorcode"] == "invalidparameter"
        and missing["debuginfo"] == "Missing function name"
    )


def test_without_json_format_moodle_answers_xml(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz)
    response = requests.get(
        moodle.ws_url,
        params={"wstoken": job.token, "wsfunction": "quiz_archiver_update_job_status"},
        timeout=10,
    )
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION class=')
    assert "<ERRORCODE>invalidparameter</ERRORCODE>" in response.text


def test_json_request_body_is_ignored_like_php(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz)
    response = requests.post(
        moodle.ws_url,
        json={
            "wstoken": job.token,
            "moodlewsrestformat": "json",
            "wsfunction": "quiz_archiver_update_job_status",
        },
        timeout=10,
    )
    assert "<ERRORCODE>invalidtoken</ERRORCODE>" in response.text


def test_post_and_get_are_both_accepted(setup) -> None:  # type: ignore[no-untyped-def]
    _quiz, job, client = setup
    client.method = "POST"
    assert client.call("quiz_archiver_update_job_status", jobid=job.jobid, status="RUNNING") == {
        "status": "OK"
    }
    client.method = "GET"
    assert client.call("quiz_archiver_update_job_status", jobid=job.jobid, status="RUNNING") == {
        "status": "OK"
    }


def test_parameter_strictness_over_http(setup) -> None:  # type: ignore[no-untyped-def]
    quiz, job, client = setup
    good = report_params(job, quiz, quiz.attemptids[0])
    answer = client.raw(
        "quiz_archiver_generate_attempt_report", {**good, "attachments": "True"}
    ).json()
    assert answer["errorcode"] == "invalidparameter"
    assert answer["debuginfo"] == (
        "attachments => Invalid parameter value detected: "
        'Invalid external api parameter: the value is "True", '
        'the server was expecting "bool" type'
    )
    answer = client.call("quiz_archiver_generate_attempt_report", **good, extra="1")
    assert answer["debuginfo"] == "Unexpected keys (extra) detected in parameter array."
    sections = {k: v for k, v in good["sections"].items() if k != "quiz_grade"}
    answer = client.call("quiz_archiver_generate_attempt_report", **{**good, "sections": sections})
    assert answer["debuginfo"] == (
        "sections => Invalid parameter value detected: "
        "Missing required key in single structure: quiz_grade"
    )
    answer = client.call("quiz_archiver_generate_attempt_report", **{**good, "courseid": "12abc"})
    assert answer["errorcode"] == "invalidparameter" and answer["debuginfo"].startswith(
        "courseid => "
    )


# -- update_job_status -----------------------------------------------------------------------------


def test_calls_before_the_row_exists(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=2)
    job = moodle.create_job(quiz)
    client = WsClient(moodle, job.token)
    assert client.call("quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING") == {
        "status": "E_UPDATE_FAILED"
    }
    params = report_params(job, quiz, quiz.attemptids[0], jobid=JOBID)
    assert client.call("quiz_archiver_generate_attempt_report", **params) == {
        "status": "E_JOB_NOT_FOUND"
    }
    moodle.register_job(job, JOBID)
    assert client.call("quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING") == {
        "status": "OK"
    }
    assert [c.response_status for c in moodle.calls_for(JOBID)] == [
        "E_UPDATE_FAILED",
        "E_JOB_NOT_FOUND",
        "OK",
    ]


def test_status_updates_are_stored_and_final_status_deletes_token(
    setup, moodle: FakeMoodle
) -> None:  # type: ignore[no-untyped-def]
    _quiz, job, client = setup
    update = "quiz_archiver_update_job_status"
    assert client.call(
        update, jobid=JOBID, status="RUNNING", statusextras=json.dumps({"progress": 0})
    ) == {"status": "OK"}
    assert client.call(update, jobid=JOBID, status="RUNNING", statusextras='{"progress": 50}') == {
        "status": "OK"
    }
    assert client.call(update, jobid=JOBID, status="ANYTHING GOES") == {"status": "OK"}
    assert moodle.job(JOBID).statusextras is None  # omitted extras clear the stored ones
    assert client.call(update, jobid=JOBID, status="FINALIZING", statusextras="{not json") == {
        "status": "E_INVALID_STATUSEXTRAS_JSON"
    }
    assert job.token_valid
    assert client.call(update, jobid=JOBID, status="FAILED") == {"status": "OK"}
    assert moodle.job(JOBID).statusextras_history == [
        ("RUNNING", {"progress": 0}),
        ("RUNNING", {"progress": 50}),
        ("ANYTHING GOES", None),
        ("FAILED", None),
    ]
    assert not job.token_valid
    assert all(b.deleted for b in job.backups)
    # The token is gone, so the web service layer refuses before the function runs.
    assert client.call(update, jobid=JOBID, status="RUNNING")["errorcode"] == "invalidtoken"


def test_completed_job_and_foreign_token(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    quiz, job, client = setup
    other = moodle.create_job(quiz)
    moodle.register_job(other, "other-job")
    foreign = WsClient(moodle, other.token)
    update = "quiz_archiver_update_job_status"
    assert foreign.call(update, jobid=JOBID, status="RUNNING") == {"status": "E_ACCESS_DENIED"}
    params = report_params(job, quiz, quiz.attemptids[0])
    assert foreign.call("quiz_archiver_generate_attempt_report", **params) == {
        "status": "E_ACCESS_DENIED"
    }
    assert client.call(update, jobid=JOBID, status="TIMEOUT") == {"status": "OK"}
    # A completed job answers E_JOB_ALREADY_COMPLETED even to another job's (valid) token.
    assert foreign.call(update, jobid=JOBID, status="RUNNING") == {
        "status": "E_JOB_ALREADY_COMPLETED"
    }


def test_scalar_statusextras_is_a_php_type_error(setup) -> None:  # type: ignore[no-untyped-def]
    _quiz, job, client = setup
    answer = client.call(
        "quiz_archiver_update_job_status", jobid=job.jobid, status="RUNNING", statusextras="42"
    )
    assert answer["exception"] == "TypeError" and "errorcode" not in answer
    assert client.call(
        "quiz_archiver_update_job_status", jobid=job.jobid, status="RUNNING", statusextras="0"
    ) == {
        "status": "OK"  # "0" is falsy in PHP: no extras at all
    }


# -- generate_attempt_report -----------------------------------------------------------------------


def test_report_answer_shape_and_trailer(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    quiz, job, client = setup
    attemptid = quiz.attemptids[1]
    response = client.raw(
        "quiz_archiver_generate_attempt_report", report_params(job, quiz, attemptid)
    )
    assert response.text.endswith('"status":"OK"}</body></html>')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    answer = decode_first_json(response.text)
    assert list(answer) == [
        "courseid",
        "cmid",
        "quizid",
        "attemptid",
        "foldername",
        "filename",
        "report",
        "attachments",
        "status",
    ]
    assert (answer["courseid"], answer["cmid"], answer["quizid"], answer["attemptid"]) == (
        quiz.courseid,
        quiz.cmid,
        quiz.quizid,
        attemptid,
    )
    attempt = quiz.attempt(attemptid)
    assert attempt is not None
    user = quiz.users[attempt.userid]
    assert answer["foldername"].startswith(f"{user.username}/{attemptid}-")
    assert answer["filename"].startswith(f"attempt-{attemptid}-{user.username}-")
    report = answer["report"]
    assert f'<base href="{moodle.wwwroot}">' in report
    assert 'class="quiz-archiver-report' in report
    assert (
        user.fullname in report
        and attempt.answer_word in report
        and f"attempt {attemptid}" in report
    )
    assert 'class="filter_mathjaxloader_equation"' in report and "\\(E = mc^2\\)" in report
    assert "data:image/png;base64," in report
    assert f"{moodle.wwwroot}/lib/mathjax3/es5/tex-mml-chtml.js" in report
    assert len(answer["attachments"]) == 2
    assert moodle.job(JOBID).attachment_counts == {attemptid: 2}
    for item in answer["attachments"]:
        assert list(item) == [
            "slot",
            "filename",
            "filesize",
            "mimetype",
            "contenthash",
            "downloadurl",
        ]
        download = requests.get(
            item["downloadurl"], params={"token": job.token, "forcedownload": 1}, timeout=10
        )
        assert download.status_code == 200
        assert len(download.content) == item["filesize"]
        assert hashlib.sha1(download.content).hexdigest() == item["contenthash"]  # noqa: S324


def test_report_sections_shape_the_page(setup) -> None:  # type: ignore[no-untyped-def]
    quiz, job, client = setup
    flags = dict.fromkeys(job.request_body["task_archive_quiz_attempts"]["sections"], False)
    flags.update(header=True, question=True)
    answer = client.call(
        "quiz_archiver_generate_attempt_report",
        **report_params(job, quiz, quiz.attemptids[0], sections=flags, attachments=False),
    )
    report = answer["report"]
    assert "quizreviewsummary" in report and 'class="que ' in report
    assert "Response history" not in report and 'class="rightanswer"' not in report
    assert answer["attachments"] == []


def test_report_checks(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    quiz, job, client = setup
    report = "quiz_archiver_generate_attempt_report"
    base = report_params(job, quiz, quiz.attemptids[0])
    assert (
        client.call(report, **{**base, "cmid": 99999})["debuginfo"]
        == "No module context with given cmid found"
    )
    assert (
        client.call(report, **{**base, "courseid": 99999})["debuginfo"]
        == "No course with given courseid found"
    )
    assert (
        client.call(report, **{**base, "foldernamepattern": "/x"})["debuginfo"]
        == "Invalid foldername pattern"
    )
    assert (
        client.call(report, **{**base, "filenamepattern": "a.${x}"})["debuginfo"]
        == "Report filename pattern is invalid"
    )
    assert (
        client.call(report, **{**base, "attemptid": 99999})["debuginfo"]
        == "No attempt with given attemptid found"
    )
    other_quiz = moodle.create_quiz(attempts=1)
    assert client.call(
        report, **{**base, "cmid": other_quiz.cmid, "quizid": other_quiz.quizid}
    ) == {"status": "E_ACCESS_DENIED"}


def test_job_past_its_timeout_is_refused(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    quiz, job, client = setup
    params = report_params(job, quiz, quiz.attemptids[0])
    assert client.call("quiz_archiver_generate_attempt_report", **params)["status"] == "OK"
    moodle.advance_time(61 * 60)
    answer = client.call("quiz_archiver_generate_attempt_report", **params)
    assert answer["errorcode"] == "accessexception"
    assert (
        answer["debuginfo"] == "Invalid token - token expired - check validuntil time for the token"
    )
    assert not job.token_valid


def test_timeout_check_inside_the_function(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, timeout_min=5)
    moodle.register_job(job, JOBID)
    with moodle.site.lock:  # the row is older than the timeout while the token still lives
        job.inserted = moodle.clock.now() - 6 * 60
    client = WsClient(moodle, job.token)
    assert client.call(
        "quiz_archiver_generate_attempt_report", **report_params(job, quiz, quiz.attemptids[0])
    ) == {"status": "E_ACCESS_DENIED"}


# -- metadata, backups ----------------------------------------------------------------------------


def test_metadata_order_types_and_limit(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    quiz, _job, client = setup
    ids = {"jobid": JOBID, "courseid": quiz.courseid, "cmid": quiz.cmid, "quizid": quiz.quizid}
    answer = client.call(
        "quiz_archiver_get_attempts_metadata", **ids, attemptids=quiz.attemptids[:2]
    )
    assert list(answer) == ["status", "courseid", "cmid", "quizid", "attempts"]
    rows = answer["attempts"]
    assert [r["attemptid"] for r in rows] == quiz.attemptids[:2]
    assert list(rows[0]) == [
        "attemptid",
        "userid",
        "username",
        "firstname",
        "lastname",
        "idnumber",
        "timestart",
        "timefinish",
        "attempt",
        "state",
    ]
    assert rows[1]["idnumber"] == "" and rows[0]["state"] == "finished"
    assert all(
        isinstance(r[k], int)
        for r in rows
        for k in ("attemptid", "userid", "timestart", "timefinish")
    )
    too_many = client.call(
        "quiz_archiver_get_attempts_metadata", **ids, attemptids=list(range(1, 102))
    )
    assert too_many["errorcode"] == "invalidparameter"
    # An id of another quiz is silently dropped, an empty list means "all attempts".
    other = moodle.create_quiz(attempts=1)
    answer = client.call(
        "quiz_archiver_get_attempts_metadata",
        **ids,
        attemptids=[quiz.attemptids[0], other.attemptids[0]],
    )
    assert [r["attemptid"] for r in answer["attempts"]] == [quiz.attemptids[0]]


def test_backup_status_lifecycle(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, backups=("quiz", "course"), backup_ready_after=30)
    moodle.register_job(job, JOBID)
    client = WsClient(moodle, job.token)
    entries = job.request_body["task_moodle_backups"]
    assert [e["filearea"] for e in entries] == ["activity", "course"]
    status = [
        client.call("quiz_archiver_get_backup_status", jobid=JOBID, backupid=e["backupid"])
        for e in entries
    ]
    assert status == [{"status": "E_BACKUP_PENDING"}] * 2
    head = requests.head(entries[0]["file_download_url"], params={"token": job.token}, timeout=10)
    assert head.status_code == 404  # the file exists only once the backup ran
    moodle.advance_time(31)
    assert client.call(
        "quiz_archiver_get_backup_status", jobid=JOBID, backupid=entries[0]["backupid"]
    ) == {"status": "SUCCESS"}
    assert client.call("quiz_archiver_get_backup_status", jobid=JOBID, backupid="f" * 32) == {
        "status": "E_BACKUP_NOT_FOUND"
    }
    other = moodle.create_job(moodle.create_quiz(attempts=1), backups=("quiz",))
    foreign_backup = other.request_body["task_moodle_backups"][0]["backupid"]
    assert client.call("quiz_archiver_get_backup_status", jobid=JOBID, backupid=foreign_backup) == {
        "status": "E_ACCESS_DENIED"
    }


def test_failing_backup(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    job = moodle.create_job(quiz, backups=("quiz",), backup_fails=True)
    moodle.register_job(job, JOBID)
    backupid = job.request_body["task_moodle_backups"][0]["backupid"]
    assert WsClient(moodle, job.token).call(
        "quiz_archiver_get_backup_status", jobid=JOBID, backupid=backupid
    ) == {"status": "E_BACKUP_FAILED"}


# -- process_uploaded_artifact --------------------------------------------------------------------


def test_artifact_checksum_mismatch_fails_the_job(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    _quiz, job, client = setup
    content = b"PK\x03\x04 not really a zip"
    upload = client.upload(content).json()[0]
    wrong = hashlib.sha256(content + b"x").hexdigest()
    answer = client.call(
        "quiz_archiver_process_uploaded_artifact", jobid=JOBID, **artifact_params(upload, wrong)
    )
    assert answer == {"status": "E_ARTIFACT_CHECKSUM_INVALID"}
    assert moodle.job(JOBID).status == "FAILED"
    assert moodle.job(JOBID).artifact is None
    assert not job.token_valid


def test_artifact_upper_case_checksum_does_not_match(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    _quiz, _job, client = setup
    content = b"some archive"
    upload = client.upload(content).json()[0]
    upper = hashlib.sha256(content).hexdigest().upper()
    answer = client.call(
        "quiz_archiver_process_uploaded_artifact", jobid=JOBID, **artifact_params(upload, upper)
    )
    assert answer == {"status": "E_ARTIFACT_CHECKSUM_INVALID"}


def test_artifact_not_found_and_success(moodle: FakeMoodle) -> None:
    quiz = moodle.create_quiz(attempts=1)
    for jobid, found in (("job-missing", False), ("job-ok", True)):
        job = moodle.create_job(quiz)
        moodle.register_job(job, jobid)
        client = WsClient(moodle, job.token)
        content = b"archive bytes " + jobid.encode()
        upload = client.upload(content).json()[0]
        if not found:
            upload = {**upload, "itemid": upload["itemid"] + 1}
        answer = client.call(
            "quiz_archiver_process_uploaded_artifact",
            jobid=jobid,
            **artifact_params(upload, hashlib.sha256(content).hexdigest()),
        )
        if found:
            assert answer == {"status": "OK"}
            assert moodle.job(jobid).status == "FINISHED"
            assert moodle.job(jobid).artifact == content
            assert moodle.job(jobid).statusextras_history[-1] == ("FINISHED", None)
        else:
            assert answer == {"status": "E_UPLOADED_ARTIFACT_NOT_FOUND"}
            assert moodle.job(jobid).status == "FAILED"
        assert not job.token_valid


def test_call_records_redact_tokens(setup, moodle: FakeMoodle) -> None:  # type: ignore[no-untyped-def]
    _quiz, job, client = setup
    client.call("quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING")
    WsClient(moodle, "f" * 32).call(
        "quiz_archiver_update_job_status", jobid=JOBID, status="RUNNING"
    )
    records = moodle.ws_calls("quiz_archiver_update_job_status")
    assert [r.token_valid for r in records] == [True, False]
    assert all(job.token not in repr(r) for r in moodle.calls)
    assert job.token not in repr(job)
    assert records[0].params["wstoken"].startswith("<redacted:")
    assert (
        records[0].jobid == JOBID and records[0].method == "GET" and records[0].http_status == 200
    )
    assert records[0].response_status == "OK" and records[1].response_status == "invalidtoken"
