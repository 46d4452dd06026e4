"""What the Moodle side does before and around the worker call.

* :func:`create_quiz`: course, quiz, users and finished attempts (optionally with attachments).
* :func:`create_job`: the plugin's "create archive" action: a 32-hex job token (valid for the
  job timeout), optional asynchronous backups, and the exact JSON body the plugin POSTs
  (quiz_archiver v7, section 2.2; archivingmod_quiz v1, section 9.3).
* :func:`register_job`: Moodle inserting the job row after the worker answered 200.
* :func:`submit_job`: the plugin's HTTP call to the worker (timeouts, headers, error handling)
  followed by :func:`register_job`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import patterns
from .faults import FaultConfig
from .files import make_attachments, make_mbz
from .state import (
    SERVICE_ARCHIVINGMOD_QUIZ,
    SERVICE_QUIZ_ARCHIVER,
    UNCONFIGURED_UPLOAD_LIMIT,
    Attempt,
    Backup,
    Course,
    Job,
    Protocol,
    Quiz,
    Site,
    Token,
    User,
)
from .ws_functions import ARCHIVINGMOD_QUIZ_SECTIONS, QUIZ_ARCHIVER_SECTIONS

SECTION_DEPENDENCIES = {
    "quiz_feedback": ("header",),
    "quiz_grade": ("header",),
    "question_correctness": ("question",),
    "question_marks": ("question",),
    "question_feedback": ("question",),
    "general_feedback": ("question",),
    "rightanswer": ("question",),
    "history": ("question",),
    "attachments": ("question",),
}

FIRST_NAMES = (
    "Ada",
    "Björn",
    "Chiara",
    "Dmitri",
    "Emeka",
    "Fatima",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
)
LAST_NAMES = (
    "Lovelace",
    "Öberg",
    "Rossi",
    "Ivanov",
    "Okafor",
    "Haddad",
    "Hopper",
    "Tanaka",
    "Silva",
    "Berg",
)
ANIMALS = (
    "Quokka",
    "Axolotl",
    "Pangolin",
    "Narwhal",
    "Okapi",
    "Tapir",
    "Wombat",
    "Ibex",
    "Numbat",
    "Kiwi",
)


def _user_spec(index: int) -> dict[str, Any]:
    return {
        "username": f"student{index + 1:04d}",
        "firstname": FIRST_NAMES[index % len(FIRST_NAMES)],
        "lastname": f"{LAST_NAMES[index % len(LAST_NAMES)]}{index + 1}",
        "idnumber": f"S{index + 1:05d}" if index % 2 == 0 else "",
    }


def create_quiz(
    site: Site,
    *,
    attempts: int = 3,
    name: str = "Reference Quiz",
    course_shortname: str = "QA",
    course_fullname: str | None = None,
    with_formulas: bool = True,
    attachments_per_attempt: int = 0,
    users: Sequence[Mapping[str, Any]] | None = None,
    mathjax_version: int | None = None,
    preview_attempts: int = 0,
    login_redirect: bool = False,
) -> Quiz:
    """A course with one quiz and ``attempts`` finished attempts (one per user, users cycle).

    ``users`` are mappings with ``username``, ``firstname``, ``lastname`` and optionally
    ``idnumber`` and ``groups`` (list of ``{"name", "idnumber"}``); by default users are generated.
    ``preview_attempts`` adds teacher previews, which Moodle never exports.
    """
    with site.lock:
        courseid = site.next_id("course")
        course = Course(
            courseid,
            course_fullname or f"Course {course_shortname}",
            course_shortname,
            site.next_id("context"),
        )
        site.courses[courseid] = course
        cmid = site.next_id("cm")
        quizid = site.next_id("quiz")
        contextid = site.next_id("context")
        specs = list(users) if users else [_user_spec(i) for i in range(max(attempts, 1))]
        quiz_users: list[User] = []
        for spec in specs:
            userid = site.next_id("user")
            groups = [
                {"id": site.next_id("group"), "idnumber": g.get("idnumber", ""), "name": g["name"]}
                for g in spec.get("groups", ())
            ]
            user = User(
                userid,
                spec["username"],
                spec["firstname"],
                spec["lastname"],
                spec.get("idnumber", "") or "",
                f"{spec['username']}@example.invalid",
                site.next_id("context"),
                groups,
            )
            site.users[userid] = user
            quiz_users.append(user)
        now = int(site.clock.now())
        rows: list[Attempt] = []
        counts: dict[int, int] = {}
        for index in range(attempts + preview_attempts):
            preview = index >= attempts
            user = quiz_users[index % len(quiz_users)]
            counts[user.id] = counts.get(user.id, 0) + 1
            attemptid = site.next_id("attempt")
            start = now - 3600 + index * 7
            attempt = Attempt(
                attemptid,
                quizid,
                user.id,
                counts[user.id],
                site.next_id("usage"),
                start,
                start + 600 + index,
                preview=preview,
                answer_word=f"{ANIMALS[attemptid % len(ANIMALS)]}{attemptid}",
            )
            if attachments_per_attempt and not preview:
                attempt.attachments = make_attachments(
                    site, attempt, user, contextid, attachments_per_attempt
                )
            rows.append(attempt)
        quiz = Quiz(
            courseid=courseid,
            cmid=cmid,
            quizid=quizid,
            attemptids=[a.id for a in rows if not a.preview],
            name=name,
            course_shortname=course_shortname,
            course_fullname=course.fullname,
            contextid=contextid,
            course_contextid=course.contextid,
            with_formulas=with_formulas,
            mathjax_version=mathjax_version,
            attempts=rows,
            users={u.id: u for u in quiz_users},
            login_redirect=login_redirect,
        )
        site.quizzes[quizid] = quiz
        return quiz


def normalise_sections(sections: Mapping[str, Any] | None, names: Sequence[str]) -> dict[str, Any]:
    """Form values as the plugin sends them: ``"1"``/``"0"``, int ``0`` when a parent is off."""
    given = dict(sections or {})
    unknown = set(given) - set(names)
    if unknown:
        raise ValueError(f"unknown report sections: {sorted(unknown)}")
    result: dict[str, Any] = {}
    for name in names:
        value = given.get(name, "1")
        if isinstance(value, bool):
            value = "1" if value else "0"
        result[name] = value
    for section, parents in SECTION_DEPENDENCIES.items():
        if section in result and any(p in result and result[p] in ("0", 0) for p in parents):
            result[section] = 0
    return result


def _image_optimize(value: Any) -> Any:
    if not value:
        return False
    if value is True:
        return {"width": 1280, "height": 1280, "quality": 85}
    return {
        "width": int(value["width"]),
        "height": int(value["height"]),
        "quality": int(value["quality"]),
    }


def _start_backup(
    site: Site, quiz: Quiz, kind: str, ready_after: float, fails: bool, size: int
) -> Backup:
    instanceid = quiz.cmid if kind == "activity" else quiz.courseid
    contextid = quiz.contextid if kind == "activity" else quiz.course_contextid
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(site.clock.now()))
    filename = f"quiz_archiver-{kind}-backup-{instanceid}-{stamp}.mbz"
    backup = Backup(
        backupid=secrets.token_hex(16),
        type=kind,
        instanceid=instanceid,  # type: ignore[arg-type]
        contextid=contextid,
        filename=filename,
        userid=site.SERVICE_USER_ID,
        created=site.clock.now(),
        ready_after=ready_after,
        fails=fails,
        content=make_mbz(kind, instanceid, filename, size),
    )
    with site.lock:
        site.backups[backup.backupid] = backup
    return backup


def _backup_entry(site: Site, backup: Backup) -> dict[str, Any]:
    pathnamehash = hashlib.sha1(  # noqa: S324 - Moodle's pathnamehash is SHA-1
        f"/{backup.contextid}/backup/{backup.type}/0/{backup.filename}".encode()
    ).hexdigest()
    url = (
        f"{site.config.internal_wwwroot}/webservice/pluginfile.php/{backup.contextid}/backup/"
        f"{backup.type}/{backup.filename}"
    )
    return {
        "backupid": backup.backupid,
        "userid": backup.userid,
        "context": backup.contextid,
        "component": "backup",
        "filearea": backup.type,
        "filepath": "/",
        "filename": backup.filename,
        "itemid": None,
        "pathnamehash": pathnamehash,
        "file_download_url": url,
    }


def upload_limit(faults: FaultConfig | None) -> int:
    """The `next` plugin's ``moodle_max_upload_bytes``: ``$CFG->maxbytes`` if set, else PHP's
    smaller upload limit (``get_max_upload_file_size()``)."""
    if faults is not None and faults.max_upload_bytes:
        return faults.max_upload_bytes
    php = [v for v in (faults.upload_max_filesize, faults.post_max_size) if v] if faults else []
    return min(php) if php else UNCONFIGURED_UPLOAD_LIMIT


def create_job(
    site: Site,
    quiz: Quiz,
    *,
    protocol: Protocol = "quiz_archiver",
    paper_format: str = "A4",
    keep_html_files: bool = False,
    backups: Iterable[str] = (),
    backup_ready_after: float = 0.0,
    backup_fails: bool = False,
    backup_bytes: int = 16 * 1024,
    image_optimize: Any = None,
    sections: Mapping[str, Any] | None = None,
    foldername_pattern: str | None = None,
    filename_pattern: str | None = None,
    archive_filename_pattern: str | None = None,
    timeout_min: int = 60,
    attempts_subset: Sequence[int] | None = None,
    auto_register_after: float | None = None,
    archive_flatten: bool | None = None,
    archive_filehashes: bool | None = None,
    faults: FaultConfig | None = None,
) -> Job:
    """Do what the plugin does when a teacher submits the archive form (see module doc).

    ``archive_flatten`` / ``archive_filehashes``: worker 5.0's archive options, put into the
    body when given (no released plugin sends them yet). ``faults``: the upload limits a
    `next` plugin reads when it builds the body."""
    if protocol not in ("quiz_archiver", "archivingmod_quiz"):
        raise ValueError(f"unknown protocol {protocol!r}")
    now = site.clock.now()
    token = secrets.token_hex(16)
    service_user = site.SERVICE_USER_ID if protocol == "quiz_archiver" else site.ADMIN_USER_ID
    service = SERVICE_QUIZ_ARCHIVER if protocol == "quiz_archiver" else SERVICE_ARCHIVINGMOD_QUIZ
    with site.lock:
        site.tokens[token] = Token(token, service, service_user, int(now + timeout_min * 60), now)
    attemptids = list(attempts_subset) if attempts_subset is not None else list(quiz.attemptids)
    folder = foldername_pattern or patterns.DEFAULT_FOLDERNAME_PATTERN
    filename = filename_pattern or patterns.DEFAULT_FILENAME_PATTERN
    course = site.courses[quiz.courseid]
    base = site.config.internal_wwwroot
    chunks = site.config.plugin_release == "next"
    options = {
        key: value
        for key, value in (
            ("archive_flatten", archive_flatten),
            ("archive_filehashes", archive_filehashes),
        )
        if value is not None
    }
    if protocol == "quiz_archiver":
        kinds = list(backups)
        if set(kinds) - {"quiz", "course"}:
            raise ValueError("backups must be a subset of ('quiz', 'course')")
        started = [
            _start_backup(
                site,
                quiz,
                "activity" if kind == "quiz" else "course",
                backup_ready_after,
                backup_fails,
                backup_bytes,
            )
            for kind in ("quiz", "course")
            if kind in kinds
        ]
        archive_pattern = archive_filename_pattern or patterns.DEFAULT_ARCHIVE_FILENAME_PATTERN
        archive_name = patterns.expand_archive_filename(
            archive_pattern,
            patterns.archive_filename_data(
                courseid=course.id,
                coursename=course.fullname,
                courseshortname=course.shortname,
                cmid=quiz.cmid,
                quizid=quiz.quizid,
                quizname=quiz.name,
                now=now,
            ),
        )
        body: dict[str, Any] = {
            "api_version": 7,
            "moodle_base_url": base,
            "moodle_ws_url": f"{base}/webservice/rest/server.php",
            "moodle_upload_url": f"{base}/webservice/upload.php",
            **({"moodle_max_upload_bytes": upload_limit(faults)} if chunks else {}),
            "wstoken": token,
            "courseid": quiz.courseid,
            "cmid": quiz.cmid,
            "quizid": quiz.quizid,
            "task_archive_quiz_attempts": {
                "attemptids": attemptids,
                "fetch_metadata": True,
                "sections": normalise_sections(sections, QUIZ_ARCHIVER_SECTIONS),
                "paper_format": paper_format,
                "keep_html_files": keep_html_files,
                "foldername_pattern": folder,
                "filename_pattern": filename,
                "image_optimize": _image_optimize(image_optimize),
            },
            "task_moodle_backups": [_backup_entry(site, b) for b in started] or None,
            "archive_filename": archive_name,
            **options,
        }
        job = Job(
            protocol,
            token,
            quiz,
            body,
            "/archive",
            timeout_min,
            now,
            backups=started,
            auto_register_after=auto_register_after,
        )
    else:
        if list(backups):
            raise ValueError("archivingmod_quiz jobs have no backups (the framework makes them)")
        taskid = site.next_id("task")
        archive_pattern = archive_filename_pattern or patterns.DEFAULT_LA_ARCHIVE_FILENAME_PATTERN
        archive_name = patterns.expand_archive_filename(
            archive_pattern,
            patterns.la_archive_filename_data(
                courseid=course.id,
                coursename=course.fullname,
                courseshortname=course.shortname,
                cmid=quiz.cmid,
                cmname=quiz.name,
                now=now,
            ),
        )
        report_sections = normalise_sections(sections, ARCHIVINGMOD_QUIZ_SECTIONS)
        body = {
            "api_version": 1,
            "taskid": taskid,
            "moodle_api": {
                "wstoken": token,
                "base_url": base,
                "webservice_url": f"{base}/webservice/rest/server.php",
                "upload_url": f"{base}/webservice/upload.php",
                **({"max_upload_bytes": upload_limit(faults)} if chunks else {}),
            },
            "job": {
                "attemptids": attemptids,
                "report_sections": report_sections,
                "paper_format": paper_format,
                "archive_filename": archive_name,
                "foldername_pattern": folder,
                "filename_pattern": filename,
                "image_optimize": _image_optimize(image_optimize),
                "fetch_metadata": True,
                "fetch_attachments": report_sections["attachments"] in ("1", 1),
                "keep_html_files": bool(keep_html_files),
                **options,
            },
        }
        job = Job(
            protocol,
            token,
            quiz,
            body,
            "/archive/archivingmod_quiz",
            timeout_min,
            now,
            taskid=taskid,
            status=20,
            auto_register_after=auto_register_after,
        )
    job._site = site
    with site.lock:
        site.jobs.append(job)
    return job


def register_job(
    site: Site, job: Job, jobid: str, status: str | int = "AWAITING_PROCESSING"
) -> Job:
    """Moodle received ``{"jobid", "status"}`` from the worker and inserts/updates the job row.

    quiz_archiver: the row appears now, keyed by ``jobid`` (unique, at most 36 characters), with
    ``status`` verbatim. archivingmod_quiz: the task row already exists; the driver sets it to
    AWAITING_PROCESSING (40) whatever the worker said (overwriting an earlier RUNNING).
    """
    if not isinstance(jobid, str) or not jobid or len(jobid) > 36:
        raise ValueError(f"Moodle cannot store jobid {jobid!r} (char(36) column)")
    with site.lock:
        if any(j.jobid == jobid and j is not job for j in site.jobs):
            raise ValueError(f"duplicate jobid {jobid!r}: Moodle's unique index refuses it")
        if job.registered:
            raise ValueError("job already registered")
        job.jobid = jobid
        job.registered = True
        job.inserted = site.clock.now()
        if job.protocol == "quiz_archiver":
            job.status = status
            job.statusextras = None
        else:
            job.status = 40
    return job


def schedule_auto_register(site: Site, job: Job, jobid: str) -> None:
    """Register ``job`` under ``jobid`` after ``job.auto_register_after`` seconds (race emulation).

    Called once, for the first web service call that carries the job's token and a job id.
    """
    with site.lock:
        if job.registered or job.auto_register_scheduled:
            return
        job.auto_register_scheduled = True
    delay = job.auto_register_after or 0.0

    def run() -> None:
        time.sleep(delay)
        with site.lock:
            if not job.registered:
                register_job(site, job, jobid)

    threading.Thread(target=run, name=f"fakemoodle-register-{jobid[:8]}", daemon=True).start()


@dataclass
class SubmitResult:
    """The outcome of the plugin's enqueue call as the teacher would see it."""

    ok: bool
    http_status: int | None
    data: Any
    message: str


def submit_job(site: Site, job: Job, worker_url: str, register_delay: float = 0.0) -> SubmitResult:
    """POST the job to ``<worker_url><endpoint_path>`` like the plugin, then register it.

    Timeouts are the plugin's (connect 10 s / total 20 s for quiz_archiver, 5 s / 20 s for
    archivingmod_quiz). The job row is inserted ``register_delay`` seconds after the answer.
    """
    import requests

    payload = json.dumps(job.request_body).encode()
    connect = 10 if job.protocol == "quiz_archiver" else 5
    url = worker_url.rstrip("/") + job.endpoint_path
    try:
        response = requests.post(
            url,
            data=payload,
            timeout=(connect, 20),
            headers={
                "Content-Type": "application/json",
                "Content-Length": str(len(payload)),
                "User-Agent": "MoodleBot/5.0 (fakemoodle)",
            },
        )
    except requests.RequestException as exc:
        return SubmitResult(
            False, None, None, f"Establishing a connection to the archive worker failed. ({exc})"
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        if isinstance(data, dict) and "error" in data:
            return SubmitResult(
                False,
                response.status_code,
                data,
                f"The archive worker reported an error: {data['error']}",
            )
        return SubmitResult(
            False,
            response.status_code,
            data,
            "Establishing a connection to the archive worker failed.",
        )
    if not isinstance(data, dict) or not isinstance(data.get("jobid"), str) or "status" not in data:
        return SubmitResult(
            False, 200, data, "Establishing a connection to the archive worker failed."
        )
    if register_delay > 0:
        job.auto_register_after = register_delay
        schedule_auto_register(site, job, data["jobid"])
    else:
        register_job(site, job, data["jobid"], data["status"])
    return SubmitResult(True, 200, data, "Archive job created.")
