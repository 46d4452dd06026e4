"""The fake Moodle's database: users, courses, quizzes, attempts, tokens, jobs, backups, files.

Everything lives in memory (uploaded and stored files on disk under ``data_dir``) and is
guarded by one re-entrant lock, because the HTTP server thread and the test thread both touch
it. Time comes from :class:`Clock`, which tests can move forward.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Protocol = Literal["quiz_archiver", "archivingmod_quiz"]
PluginRelease = Literal["4.1.0", "next"]
PLUGIN_RELEASES: tuple[PluginRelease, ...] = ("4.1.0", "next")
# What a `next` plugin sends as its upload limit when no limit is configured here: PHP's
# upload_max_filesize / post_max_size raised to 8G (what get_max_upload_file_size() gives).
UNCONFIGURED_UPLOAD_LIMIT = 8 * 1024**3

QUIZ_ARCHIVER_FINAL = ("FINISHED", "FAILED", "TIMEOUT", "DELETED")

# local_archiving activity_archiving_task_status
TASK_STATUS = {
    0: "UNINITIALIZED",
    20: "CREATED",
    40: "AWAITING_PROCESSING",
    100: "RUNNING",
    200: "FINALIZING",
    220: "FINISHED",
    240: "CANCELED",
    250: "FAILED",
    251: "TIMEOUT",
    255: "UNKNOWN",
}
TASK_STATUS_VALUE = {name: value for value, name in TASK_STATUS.items()}
TASK_FINAL = (220, 240, 250, 251)

SERVICE_QUIZ_ARCHIVER = "quiz_archiver_webservice"
SERVICE_ARCHIVINGMOD_QUIZ = "archivingmod_quiz_ws"


@dataclass
class SiteConfig:
    """Site-wide settings of the fake Moodle.

    ``wwwroot`` is ``$CFG->wwwroot`` (public: used in report pages and attachment URLs),
    ``internal_wwwroot`` the plugin's ``internal_wwwroot`` setting (used in request bodies and
    backup URLs); both are the server's own base URL unless ``public_url`` was given.
    """

    wwwroot: str = ""
    internal_wwwroot: str = ""
    debug: bool = True
    mathjax_version: int | None = 3
    report_trailer: str = "</body></html>"
    metadata_max_ids: int | None = 100
    max_request_line: int = 8190
    # Which plugin generation the site runs: "4.1.0" (released quiz_archiver; archivingmod_quiz
    # 1.0.0) or "next" (chunked uploads: requests carry the upload limit, the artifact call
    # requires `artifact_count` and reassembles chunks).
    plugin_release: PluginRelease = "4.1.0"


class Clock:
    """Wall clock plus an offset that tests can advance (``FakeMoodle.advance_time``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class User:
    id: int
    username: str
    firstname: str
    lastname: str
    idnumber: str = ""
    email: str = ""
    contextid: int = 0
    groups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.firstname} {self.lastname}"


@dataclass
class Course:
    id: int
    fullname: str
    shortname: str
    contextid: int


@dataclass
class Attachment:
    """A file a student attached to an essay response (question/response_attachments)."""

    slot: int
    filename: str
    mimetype: str
    contextid: int
    usageid: int
    itemid: int
    content: bytes = field(repr=False)

    @property
    def contenthash(self) -> str:
        return hashlib.sha1(self.content).hexdigest()  # noqa: S324 - Moodle's contenthash is SHA-1


@dataclass
class Attempt:
    id: int
    quizid: int
    userid: int
    attempt: int
    uniqueid: int
    timestart: int
    timefinish: int
    state: str = "finished"
    preview: bool = False
    answer_word: str = ""
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class Quiz:
    """A quiz with its course and course module, as ``create_quiz`` returns it."""

    courseid: int
    cmid: int
    quizid: int
    attemptids: list[int]
    name: str
    course_shortname: str
    course_fullname: str
    contextid: int
    course_contextid: int
    with_formulas: bool
    mathjax_version: int | None
    attempts: list[Attempt]
    users: dict[int, User]
    login_redirect: bool = False

    def attempt(self, attemptid: int) -> Attempt | None:
        return next((a for a in self.attempts if a.id == attemptid), None)


@dataclass
class Backup:
    """An asynchronous Moodle backup started for a job (quiz activity or whole course)."""

    backupid: str
    type: Literal["activity", "course"]
    instanceid: int
    contextid: int
    filename: str
    userid: int
    created: float
    ready_after: float
    fails: bool
    content: bytes = field(repr=False)
    deleted: bool = False

    def state(self, now: float) -> Literal["pending", "ok", "failed"]:
        if now < self.created + self.ready_after:
            return "pending"
        return "failed" if self.fails else "ok"


@dataclass
class Token:
    token: str = field(repr=False)
    service: str
    userid: int
    validuntil: int
    created: float


@dataclass
class DraftFile:
    contextid: int
    itemid: int
    filepath: str
    filename: str
    path: Path
    size: int
    userid: int


@dataclass
class StatusUpdate:
    """One change of a job's status, from the worker (``source="worker"``) or from Moodle."""

    time: float
    status: str | int
    extras: Any
    source: str
    progress: int | None = None


@dataclass
class Job:
    """A quiz_archiver job row or an archivingmod_quiz task row, plus what the test needs.

    ``status`` is the raw DB value (a string for quiz_archiver, an int for archivingmod_quiz);
    ``status_name`` is always the string name. ``statusextras_history`` lists every status
    update after the row was inserted (worker updates and Moodle's own transitions such as
    FINISHED after a verified upload) as ``(status, extras)`` tuples.
    """

    protocol: Protocol
    token: str = field(repr=False)
    quiz: Quiz = field(repr=False)
    request_body: dict[str, Any] = field(repr=False)
    endpoint_path: str
    timeout_min: int
    created: float
    backups: list[Backup] = field(default_factory=list, repr=False)
    taskid: int | None = None
    jobid: str | None = None
    registered: bool = False
    inserted: float | None = None
    status: str | int | None = None
    statusextras: Any = None
    progress: int | None = None
    status_updates: list[StatusUpdate] = field(default_factory=list, repr=False)
    artifact_path: Path | None = None
    artifact_filename: str | None = None
    artifact_sha256: str | None = None
    attachment_counts: dict[int, int] = field(default_factory=dict)
    auto_register_after: float | None = None
    auto_register_scheduled: bool = False
    _site: Site | None = field(default=None, repr=False)

    @property
    def status_name(self) -> str | None:
        if isinstance(self.status, int):
            return TASK_STATUS.get(self.status, str(self.status))
        return self.status

    @property
    def statusextras_history(self) -> list[tuple[str | int, Any]]:
        return [(u.status, u.extras) for u in self.status_updates]

    @property
    def is_complete(self) -> bool:
        if self.protocol == "quiz_archiver":
            return self.status in QUIZ_ARCHIVER_FINAL
        return self.status in TASK_FINAL

    @property
    def token_valid(self) -> bool:
        """True while Moodle would still accept the job's token."""
        assert self._site is not None
        return self._site.token_usable(self.token)

    @property
    def artifact(self) -> bytes | None:
        """The stored archive bytes once ``process_uploaded_artifact`` accepted it."""
        if self.artifact_path is None:
            return None
        return self.artifact_path.read_bytes()

    @property
    def attemptids(self) -> list[int]:
        if self.protocol == "quiz_archiver":
            task = self.request_body.get("task_archive_quiz_attempts") or {}
            return list(task.get("attemptids", []))
        return list(self.request_body["job"]["attemptids"])


class Site:
    """All rows of the fake Moodle. Methods are thread-safe."""

    SERVICE_USER_ID = 3
    ADMIN_USER_ID = 2

    def __init__(self, data_dir: Path, clock: Clock, config: SiteConfig | None = None) -> None:
        self.lock = threading.RLock()
        self.config = config or SiteConfig()
        self.data_dir = data_dir
        self.clock = clock
        self._ids: dict[str, int] = {
            "course": 1,
            "cm": 10,
            "quiz": 0,
            "attempt": 0,
            "user": 3,
            "context": 20,
            "usage": 100,
            "task": 0,
            "job": 0,
            "itemid": 1000,
            "group": 0,
        }
        self.users: dict[int, User] = {
            2: User(2, "admin", "Admin", "User", contextid=5),
            3: User(
                3, "quiz_archiver_serviceaccount", "Quiz Archiver", "Service Account", contextid=18
            ),
        }
        self.courses: dict[int, Course] = {}
        self.quizzes: dict[int, Quiz] = {}
        self.tokens: dict[str, Token] = {}
        self.jobs: list[Job] = []
        self.backups: dict[str, Backup] = {}
        self.drafts: dict[tuple[int, int, str, str], DraftFile] = {}
        self.stored_artifacts: list[Path] = []

    def next_id(self, kind: str) -> int:
        with self.lock:
            self._ids[kind] += 1
            return self._ids[kind]

    # -- lookups -----------------------------------------------------------------------------

    def quiz_by_cmid(self, cmid: int) -> Quiz | None:
        with self.lock:
            return next((q for q in self.quizzes.values() if q.cmid == cmid), None)

    def attempt_by_id(self, attemptid: int) -> tuple[Quiz, Attempt] | None:
        with self.lock:
            for quiz in self.quizzes.values():
                attempt = quiz.attempt(attemptid)
                if attempt is not None:
                    return quiz, attempt
            return None

    # -- tokens -------------------------------------------------------------------------------

    def token_usable(self, token: str) -> bool:
        with self.lock:
            row = self.tokens.get(token)
            return row is not None and not (row.validuntil and row.validuntil < self.clock.now())

    def delete_token(self, token: str) -> None:
        with self.lock:
            self.tokens.pop(token, None)

    # -- jobs ---------------------------------------------------------------------------------

    def job_by_jobid(self, jobid: str) -> Job | None:
        with self.lock:
            return next((j for j in self.jobs if j.registered and j.jobid == jobid), None)

    def job_by_taskid(self, taskid: int) -> Job | None:
        with self.lock:
            return next((j for j in self.jobs if j.taskid == taskid), None)

    def job_by_token(self, token: str) -> Job | None:
        with self.lock:
            return next((j for j in self.jobs if j.token == token), None)

    def set_status(
        self,
        job: Job,
        status: str | int,
        extras: Any = None,
        *,
        source: str,
        progress: int | None = None,
    ) -> None:
        """Update the status; a final status deletes the token and the job's backup files."""
        with self.lock:
            job.status = status
            if job.protocol == "quiz_archiver":
                job.statusextras = extras
            job.status_updates.append(
                StatusUpdate(self.clock.now(), status, extras, source, progress)
            )
            if job.is_complete:
                self.delete_token(job.token)
                for backup in job.backups:
                    backup.deleted = True

    # -- files --------------------------------------------------------------------------------

    def draft_file(
        self, contextid: int, itemid: int, filepath: str, filename: str
    ) -> DraftFile | None:
        with self.lock:
            return self.drafts.get((contextid, itemid, filepath, filename))

    def delete_draft(self, draft: DraftFile) -> None:
        with self.lock:
            self.drafts.pop((draft.contextid, draft.itemid, draft.filepath, draft.filename), None)
            draft.path.unlink(missing_ok=True)

    def store_artifact(self, job: Job, draft: DraftFile, sha256: str) -> None:
        """Move a verified draft file into the job's artifact area."""
        with self.lock:
            target_dir = self.data_dir / "artifacts" / str(job.jobid or job.taskid)
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / draft.filename
            draft.path.replace(target)
            self.drafts.pop((draft.contextid, draft.itemid, draft.filepath, draft.filename), None)
            job.artifact_path = target
            job.artifact_filename = draft.filename
            job.artifact_sha256 = sha256
            self.stored_artifacts.append(target)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
