"""The plugins' web service functions (quiz_archiver 4.1.0, archivingmod_quiz 1.0.0, and the
`next` generation's chunked-upload variant of process_uploaded_artifact).

Each function declares its parameters (validated by :mod:`.params` before the body runs) and
returns a dict in the key order of the plugin's ``execute_returns()`` (Moodle reorders the
answer to that definition). The order of checks inside each body follows the plugin code, which
matters for which ``E_*`` status a worker sees first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from . import patterns
from .errors import MoodleError, invalid_parameter, php_type_error
from .faults import FaultConfig
from .files import attachment_content_hash, attachment_size, reassemble_chunks
from .params import (
    DEFAULT,
    PARAM_BOOL,
    PARAM_INT,
    PARAM_RAW,
    PARAM_TEXT,
    Multiple,
    Single,
    Value,
    validate_parameters,
)
from .php import truthy
from .records import CallRecord
from .report_html import ReportOptions, render_report
from .state import (
    SERVICE_ARCHIVINGMOD_QUIZ,
    SERVICE_QUIZ_ARCHIVER,
    TASK_STATUS,
    Attempt,
    Job,
    Quiz,
    Site,
    sha256_file,
)

QUIZ_ARCHIVER_SECTIONS = (
    "header",
    "quiz_feedback",
    "quiz_grade",
    "question",
    "question_correctness",
    "question_marks",
    "question_feedback",
    "general_feedback",
    "rightanswer",
    "history",
    "attachments",
)
ARCHIVINGMOD_QUIZ_SECTIONS = (
    "header",
    "quiz_feedback",
    "question",
    "question_feedback",
    "general_feedback",
    "rightanswer",
    "history",
    "attachments",
)


@dataclass
class CallContext:
    """What a function body may use: the site, the request's ``wstoken`` and the call record."""

    site: Site
    wstoken: str | None
    faults: FaultConfig
    record: CallRecord


Handler = Callable[[CallContext, dict[str, Any]], dict[str, Any]]


@dataclass
class WsFunction:
    name: str
    service: str
    parameters: Single
    handler: Handler
    report: bool = False
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # The parameters on a site with the `next` plugin generation, where they differ.
    next_parameters: Single | None = None

    def parameters_for(self, release: str) -> Single:
        if release == "next" and self.next_parameters is not None:
            return self.next_parameters
        return self.parameters


def _text(required: int = 1) -> Value:
    return Value(PARAM_TEXT, required)


def _int() -> Value:
    return Value(PARAM_INT)


# -- shared helpers ------------------------------------------------------------------------------


def _decode_statusextras(raw: str) -> Any:
    """``json_decode($raw, true, 16, JSON_THROW_ON_ERROR)``; ``ValueError`` for JsonException."""

    def reject(name: str) -> Any:
        raise ValueError(f"invalid JSON constant {name}")

    value = json.loads(raw, parse_constant=reject)

    def depth(node: Any) -> int:
        if isinstance(node, dict):
            return 1 + max((depth(v) for v in node.values()), default=0)
        if isinstance(node, list):
            return 1 + max((depth(v) for v in node), default=0)
        return 0

    if depth(value) > 16:
        raise ValueError("Maximum stack depth exceeded")
    return value


def _attachments_metadata(ctx: CallContext, attempt: Attempt) -> list[dict[str, Any]]:
    wwwroot = ctx.site.config.wwwroot
    result = []
    for att in attempt.attachments:
        size = attachment_size(att, ctx.faults)
        contenthash = attachment_content_hash(att, ctx.faults)
        if ctx.faults.attachment_bad_hash:
            contenthash = "0" * 8 + contenthash[8:]
        url = (
            f"{wwwroot}/webservice/pluginfile.php/{att.contextid}/question/response_attachments/"
            f"{att.usageid}/{att.slot}/{att.itemid}/{quote(att.filename)}"
        )
        result.append(
            {
                "slot": att.slot,
                "filename": att.filename,
                "filesize": size,
                "mimetype": att.mimetype,
                "contenthash": contenthash,
                "downloadurl": url,
            }
        )
    return result


def _metadata(site: Site, quiz: Quiz, attemptids: list[int]) -> list[dict[str, Any]]:
    """``Report::get_attempts_metadata()``: non-preview attempts of the quiz, filtered by id."""
    wanted = set(attemptids)
    rows = []
    for attempt in sorted(quiz.attempts, key=lambda a: a.id):
        if attempt.preview or (wanted and attempt.id not in wanted):
            continue
        user = site.users[attempt.userid]
        rows.append(
            {
                "attemptid": attempt.id,
                "userid": user.id,
                "username": user.username,
                "firstname": user.firstname,
                "lastname": user.lastname,
                "idnumber": user.idnumber or "",
                "timestart": attempt.timestart,
                "timefinish": attempt.timefinish,
                "attempt": attempt.attempt,
                "state": attempt.state,
            }
        )
    return rows


def _render(ctx: CallContext, quiz: Quiz, attempt: Attempt, sections: dict[str, bool]) -> str:
    site = ctx.site
    version = (
        quiz.mathjax_version if quiz.mathjax_version is not None else site.config.mathjax_version
    )
    options = ReportOptions(
        wwwroot=site.config.wwwroot,
        mathjax_version=version,
        mathjax_fault=ctx.faults.mathjax,
        login_redirect=ctx.faults.login_redirect,
        archived=site.clock.now(),
    )
    course = site.courses[quiz.courseid]
    return render_report(quiz, course, attempt, site.users[attempt.userid], sections, options)


def _name_data(site: Site, quiz: Quiz, attempt: Attempt) -> dict[str, Any]:
    user = site.users[attempt.userid]
    course = site.courses[quiz.courseid]
    return patterns.attempt_name_data(
        courseid=course.id,
        coursename=course.fullname,
        courseshortname=course.shortname,
        cmid=quiz.cmid,
        quizid=quiz.quizid,
        quizname=quiz.name,
        attemptid=attempt.id,
        username=user.username,
        firstname=user.firstname,
        lastname=user.lastname,
        idnumber=user.idnumber,
        timestart=attempt.timestart,
        timefinish=attempt.timefinish,
        groups=user.groups,
        now=site.clock.now(),
    )


def _report_has_access(ctx: CallContext, courseid: int, cmid: int, quizid: int) -> bool:
    """``Report::has_access()``: a job of this quiz holds the token, is not FINISHED/FAILED and
    was created less than ``job_timeout_min`` ago."""
    site = ctx.site
    with site.lock:
        for job in site.jobs:
            if not (job.registered and job.protocol == "quiz_archiver"):
                continue
            if (job.quiz.courseid, job.quiz.cmid, job.quiz.quizid, job.token) != (
                courseid,
                cmid,
                quizid,
                ctx.wstoken,
            ):
                continue
            if job.status in ("FINISHED", "FAILED"):
                return False
            inserted = job.inserted if job.inserted is not None else job.created
            return inserted + job.timeout_min * 60 > site.clock.now()
    return False


def _note_job(ctx: CallContext, job: Job) -> None:
    ctx.record.jobid = job.jobid
    ctx.record.taskid = job.taskid


def _qa_job(ctx: CallContext, p: dict[str, Any]) -> Job | None:
    """``ArchiveJob::get_by_jobid()``: the registered quiz_archiver job row, noted in the record."""
    job = ctx.site.job_by_jobid(p["jobid"])
    if job is None or job.protocol != "quiz_archiver":
        return None
    _note_job(ctx, job)
    return job


# -- quiz_archiver (API v7) -----------------------------------------------------------------------


def qa_update_job_status(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    site = ctx.site
    job = _qa_job(ctx, p)
    if job is None:
        return {"status": "E_UPDATE_FAILED"}
    if job.is_complete:
        return {"status": "E_JOB_ALREADY_COMPLETED"}
    if job.token != ctx.wstoken:
        return {"status": "E_ACCESS_DENIED"}
    extras = None
    if truthy(p["statusextras"]):
        try:
            extras = _decode_statusextras(p["statusextras"])
        except ValueError:
            return {"status": "E_INVALID_STATUSEXTRAS_JSON"}
        if extras is not None and not isinstance(extras, dict | list):
            raise php_type_error(
                "mod_quiz\\local\\report\\archiver\\ArchiveJob::set_status(): Argument #2 "
                f"($statusextras) must be of type ?array, {type(extras).__name__} given"
            )
    progress = extras.get("progress") if isinstance(extras, dict) else None
    site.set_status(job, p["status"], extras, source="worker", progress=progress)
    return {"status": "OK"}


def _qa_job_and_objects(
    ctx: CallContext, p: dict[str, Any]
) -> tuple[Job | None, dict[str, Any] | None, Quiz | None]:
    """Job lookup, token check and course/cm/quiz validation shared by report and metadata."""
    site = ctx.site
    job = _qa_job(ctx, p)
    if job is None:
        return None, {"status": "E_JOB_NOT_FOUND"}, None
    if job.token != ctx.wstoken:
        return job, {"status": "E_ACCESS_DENIED"}, None
    quiz = site.quiz_by_cmid(p["cmid"])
    if quiz is None:
        raise invalid_parameter("No module context with given cmid found")
    if p["courseid"] not in site.courses:
        raise invalid_parameter("No course with given courseid found")
    if p["quizid"] not in site.quizzes:
        raise invalid_parameter("No quiz with given quizid found")
    return job, None, site.quizzes[p["quizid"]]


def qa_generate_attempt_report(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    site = ctx.site
    job, early, _quiz = _qa_job_and_objects(ctx, p)
    if early is not None:
        return early
    assert job is not None
    if not patterns.is_valid_attempt_foldername_pattern(p["foldernamepattern"]):
        raise invalid_parameter("Invalid foldername pattern")
    if not patterns.is_valid_attempt_filename_pattern(p["filenamepattern"]):
        raise invalid_parameter("Report filename pattern is invalid")
    if not _report_has_access(ctx, p["courseid"], p["cmid"], p["quizid"]):
        return {"status": "E_ACCESS_DENIED"}
    found = site.attempt_by_id(p["attemptid"])
    if found is None or found[1].preview:
        raise invalid_parameter("No attempt with given attemptid found")
    quiz, attempt = found
    report = _render(ctx, quiz, attempt, p["sections"])
    attachments: list[dict[str, Any]] = []
    if p["attachments"]:
        attachments = _attachments_metadata(ctx, attempt)
        with site.lock:
            if job.quiz.attempt(attempt.id) is not None:
                job.attachment_counts[attempt.id] = len(attachments)
    data = _name_data(site, quiz, attempt)
    return {
        "courseid": p["courseid"],
        "cmid": p["cmid"],
        "quizid": p["quizid"],
        "attemptid": p["attemptid"],
        "foldername": patterns.expand_attempt_name(p["foldernamepattern"], data, folder=True),
        "filename": patterns.expand_attempt_name(p["filenamepattern"], data, folder=False),
        "report": report,
        "attachments": attachments,
        "status": "OK",
    }


def qa_get_attempts_metadata(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    _job, early, quiz = _qa_job_and_objects(ctx, p)
    if early is not None:
        return early
    assert quiz is not None
    if not _report_has_access(ctx, p["courseid"], p["cmid"], p["quizid"]):
        return {"status": "E_ACCESS_DENIED"}
    limit = ctx.site.config.metadata_max_ids
    if limit is not None and len(p["attemptids"]) > limit:
        raise invalid_parameter(
            f"Too many attemptids ({len(p['attemptids'])}): this fake Moodle accepts at most "
            f"{limit} per call (long GET URLs fail on real sites)"
        )
    return {
        "status": "OK",
        "courseid": p["courseid"],
        "cmid": p["cmid"],
        "quizid": p["quizid"],
        "attempts": _metadata(ctx.site, quiz, p["attemptids"]),
    }


def qa_get_backup_status(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    site = ctx.site
    job = _qa_job(ctx, p)
    if job is None:
        return {"status": "E_JOB_NOT_FOUND"}
    if job.token != ctx.wstoken:
        return {"status": "E_ACCESS_DENIED"}
    backup = site.backups.get(p["backupid"])
    if backup is None:
        return {"status": "E_BACKUP_NOT_FOUND"}
    expected = job.quiz.cmid if backup.type == "activity" else job.quiz.courseid
    if backup.instanceid != expected:
        return {"status": "E_ACCESS_DENIED"}
    state = backup.state(site.clock.now())
    if state == "failed":
        return {"status": "E_BACKUP_FAILED"}
    if state == "pending":
        return {"status": "E_BACKUP_PENDING"}
    return {"status": "SUCCESS"}


def qa_process_uploaded_artifact(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    job = _qa_job(ctx, p)
    if job is None:
        return {"status": "E_JOB_NOT_FOUND"}
    if job.is_complete:
        return {"status": "E_NO_ARTIFACT_UPLOAD_EXPECTED"}
    if job.token != ctx.wstoken:
        return {"status": "E_ACCESS_DENIED"}
    return _take_artifact(
        ctx,
        job,
        p,
        failed="FAILED",
        finished="FINISHED",
        codes=(
            "E_UPLOADED_ARTIFACT_NOT_FOUND",
            "E_ARTIFACT_CHECKSUM_INVALID",
            "E_STORE_ARTIFACT_FAILED",
        ),
    )


def _take_artifact(
    ctx: CallContext,
    job: Job,
    p: dict[str, Any],
    *,
    failed: str | int,
    finished: str | int,
    codes: tuple[str, str, str],
) -> dict[str, Any]:
    """Locate the draft file (`next`: reassemble it from ``artifact_count`` chunks first),
    verify its SHA-256 and store it (job FINISHED), or fail the job.

    ``codes`` are the plugin's statuses for: draft not found, checksum mismatch, store failure.
    """
    site = ctx.site
    count = p.get("artifact_count", 1)  # only the `next` plugins have the parameter
    where = {
        "contextid": p["artifact_contextid"],
        "itemid": p["artifact_itemid"],
        "filepath": p["artifact_filepath"],
        "filename": p["artifact_filename"],
    }
    if count == 1:
        draft = site.draft_file(**where)
        if draft is None:
            site.set_status(job, failed, source="moodle")
            return {"status": codes[0]}
    elif count > 1:
        draft = reassemble_chunks(site, **where, count=count)
        if draft is None:
            site.set_status(job, failed, source="moodle")
            return {"status": "E_CHUNK_REASSEMBLY_FAILED"}
    else:
        site.set_status(job, failed, source="moodle")
        return {"status": "E_INVALID_ARTIFACT_COUNT"}
    checksum = sha256_file(draft.path)
    if p["artifact_sha256sum"] != checksum:  # PHP "!=": an upper-case hex digest does not match
        site.set_status(job, failed, source="moodle")
        site.delete_draft(draft)
        return {"status": codes[1]}
    try:
        site.store_artifact(job, draft, checksum)
    except OSError:
        site.set_status(job, failed, source="moodle")
        site.delete_draft(draft)
        return {"status": codes[2]}
    site.set_status(job, finished, source="moodle")
    return {"status": "OK"}


# -- archivingmod_quiz (API v1) -------------------------------------------------------------------


def _task(ctx: CallContext, p: dict[str, Any]) -> tuple[Job | None, dict[str, Any] | None]:
    job = ctx.site.job_by_taskid(p["taskid"])
    if job is None:
        return None, {"status": "E_TASK_NOT_FOUND"}
    _note_job(ctx, job)
    if job.jobid is not None and p.get("uuid") != job.jobid:
        ctx.record.notes.append("uuid does not match the task's worker job id")
    if job.token != ctx.wstoken:
        return job, {"status": "E_ACCESS_DENIED"}
    return job, None


def am_update_task_status(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    if p["status"] not in TASK_STATUS:
        return {"status": "E_INVALID_STATUS"}
    progress = p["progress"]
    if progress is not None and (progress < 0 or progress > 100):
        return {"status": "E_INVALID_PROGRESS"}
    job, early = _task(ctx, p)
    if early is not None:
        return early
    assert job is not None
    if job.is_complete:
        return {"status": "E_ALREADY_COMPLETED"}
    with ctx.site.lock:
        if progress is not None:
            job.progress = progress
        ctx.site.set_status(job, p["status"], source="worker", progress=progress)
    return {"status": "OK"}


def am_generate_attempt_report(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    site = ctx.site
    job, early = _task(ctx, p)
    if early is not None:
        return early
    assert job is not None
    if not patterns.is_valid_attempt_foldername_pattern(
        p["foldernamepattern"], "archivingmod_quiz"
    ):
        return {"status": "E_INVALID_FOLDERNAME_PATTERN"}
    if not patterns.is_valid_attempt_filename_pattern(p["filenamepattern"]):
        return {"status": "E_INVALID_FILENAME_PATTERN"}
    quiz = job.quiz
    attempt = quiz.attempt(p["attemptid"])
    if attempt is None or attempt.preview:
        return {"status": "E_ATTEMPT_NOT_FOUND"}
    sections = dict(p["sections"])
    report = _render(ctx, quiz, attempt, sections)
    attachments = _attachments_metadata(ctx, attempt) if p["attachments"] else []
    data = _name_data(site, quiz, attempt)
    return {
        "attemptid": p["attemptid"],
        "foldername": patterns.expand_attempt_name(
            p["foldernamepattern"], data, folder=True, flavour="archivingmod_quiz"
        ),
        "filename": patterns.expand_attempt_name(
            p["filenamepattern"], data, folder=False, flavour="archivingmod_quiz"
        ),
        "report": report,
        "attachments": attachments,
        "status": "OK",
    }


def am_get_attempts_metadata(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    if not p["attemptids"]:
        return {"status": "E_ATTEMPT_NOT_FOUND"}
    job, early = _task(ctx, p)
    if early is not None:
        return early
    assert job is not None
    quiz = job.quiz
    return {
        "status": "OK",
        "courseid": quiz.courseid,
        "cmid": quiz.cmid,
        "quizid": quiz.quizid,
        "attempts": _metadata(ctx.site, quiz, p["attemptids"]),
    }


def am_process_uploaded_artifact(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    job, early = _task(ctx, p)
    if early is not None:
        return early
    assert job is not None
    if job.is_complete:
        return {"status": "E_NO_UPLOAD_EXPECTED"}
    return _take_artifact(
        ctx,
        job,
        p,
        failed=250,
        finished=220,
        codes=("E_FILE_NOT_FOUND", "E_CHECKSUM_MISMATCH", "E_STORING_FAILED"),
    )


# -- registry -------------------------------------------------------------------------------------


def _sections(names: tuple[str, ...]) -> Single:
    return Single({name: Value(PARAM_BOOL) for name in names})


_ARTIFACT_PARAMS: dict[str, Value | Single | Multiple] = {
    "artifact_component": _text(),
    "artifact_contextid": _int(),
    "artifact_userid": _int(),
    "artifact_filearea": _text(),
    "artifact_filename": _text(),
    "artifact_filepath": _text(),
    "artifact_itemid": _int(),
    "artifact_sha256sum": _text(),
}

# `next` (quiz_archiver's chunked uploads, local_archiving drivers alike): a required count.
_NEXT_ARTIFACT = {"artifact_count": _int()}

FUNCTIONS: dict[str, WsFunction] = {
    f.name: f
    for f in (
        WsFunction(
            "quiz_archiver_update_job_status",
            SERVICE_QUIZ_ARCHIVER,
            Single(
                {"jobid": _text(), "status": _text(), "statusextras": Value(PARAM_RAW, DEFAULT)}
            ),
            qa_update_job_status,
        ),
        WsFunction(
            "quiz_archiver_generate_attempt_report",
            SERVICE_QUIZ_ARCHIVER,
            Single(
                {
                    "jobid": _text(),
                    "courseid": _int(),
                    "cmid": _int(),
                    "quizid": _int(),
                    "attemptid": _int(),
                    "foldernamepattern": _text(),
                    "filenamepattern": _text(),
                    "sections": _sections(QUIZ_ARCHIVER_SECTIONS),
                    "attachments": Value(PARAM_BOOL),
                }
            ),
            qa_generate_attempt_report,
            report=True,
        ),
        WsFunction(
            "quiz_archiver_get_attempts_metadata",
            SERVICE_QUIZ_ARCHIVER,
            Single(
                {
                    "jobid": _text(),
                    "courseid": _int(),
                    "cmid": _int(),
                    "quizid": _int(),
                    "attemptids": Multiple(_int()),
                }
            ),
            qa_get_attempts_metadata,
        ),
        WsFunction(
            "quiz_archiver_get_backup_status",
            SERVICE_QUIZ_ARCHIVER,
            Single({"jobid": _text(), "backupid": _text()}),
            qa_get_backup_status,
        ),
        WsFunction(
            "quiz_archiver_process_uploaded_artifact",
            SERVICE_QUIZ_ARCHIVER,
            Single({"jobid": _text(), **_ARTIFACT_PARAMS}),
            qa_process_uploaded_artifact,
            next_parameters=Single({"jobid": _text(), **_ARTIFACT_PARAMS, **_NEXT_ARTIFACT}),
        ),
        WsFunction(
            "archivingmod_quiz_update_task_status",
            SERVICE_ARCHIVINGMOD_QUIZ,
            Single(
                {
                    "uuid": _text(),
                    "taskid": _int(),
                    "status": _int(),
                    "progress": Value(PARAM_INT, DEFAULT),
                }
            ),
            am_update_task_status,
        ),
        WsFunction(
            "archivingmod_quiz_generate_attempt_report",
            SERVICE_ARCHIVINGMOD_QUIZ,
            Single(
                {
                    "uuid": _text(),
                    "taskid": _int(),
                    "attemptid": _int(),
                    "foldernamepattern": _text(),
                    "filenamepattern": _text(),
                    "sections": _sections(ARCHIVINGMOD_QUIZ_SECTIONS),
                    "attachments": Value(PARAM_BOOL),
                }
            ),
            am_generate_attempt_report,
            report=True,
        ),
        WsFunction(
            "archivingmod_quiz_get_attempts_metadata",
            SERVICE_ARCHIVINGMOD_QUIZ,
            Single({"uuid": _text(), "taskid": _int(), "attemptids": Multiple(_int())}),
            am_get_attempts_metadata,
        ),
        WsFunction(
            "archivingmod_quiz_process_uploaded_artifact",
            SERVICE_ARCHIVINGMOD_QUIZ,
            Single({"uuid": _text(), "taskid": _int(), **_ARTIFACT_PARAMS}),
            am_process_uploaded_artifact,
            next_parameters=Single(
                {"uuid": _text(), "taskid": _int(), **_ARTIFACT_PARAMS, **_NEXT_ARTIFACT}
            ),
        ),
    )
}

# Functions that exist on a Moodle site but belong to no service of the plugins' tokens.
OTHER_KNOWN_FUNCTIONS = frozenset(
    {
        "core_webservice_get_site_info",
        "core_files_upload",
        "core_files_get_files",
        "mod_quiz_get_attempt_review",
        "core_course_get_courses",
        "core_user_get_users_by_field",
    }
)


def call(fn: WsFunction, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``params`` and run the function body (raises :class:`MoodleError`)."""
    validated = validate_parameters(fn.parameters_for(ctx.site.config.plugin_release), params)
    return fn.handler(ctx, validated)


__all__ = ["FUNCTIONS", "OTHER_KNOWN_FUNCTIONS", "CallContext", "MoodleError", "WsFunction", "call"]
