"""The plugin functions a worker calls, for both protocols (spec 3.3-3.8 and 9.3).

`MoodleApi` is what the pipeline talks to; `QuizArchiverApi` (API v7) and
`ArchivingmodQuizApi` (API v1) map it onto each plugin's function names,
parameters and status codes, and check every answer before it is trusted.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .logs import unregister_secret
from .moodle_client import (
    MoodleClient,
    MoodleError,
    MoodleException,
    MoodleResponseInvalid,
    MoodleServerError,
    MoodleStatusError,
    ProbeFailed,
    UploadedFile,
)
from .task import FILENAME_FORBIDDEN, FOLDERNAME_FORBIDDEN, ArchiveTask, Protocol

log = logging.getLogger(__name__)

METADATA_BATCH = 100


class JobStatus(StrEnum):
    UNINITIALIZED = "UNINITIALIZED"
    AWAITING_PROCESSING = "AWAITING_PROCESSING"
    RUNNING = "RUNNING"
    WAITING_FOR_BACKUP = "WAITING_FOR_BACKUP"
    FINALIZING = "FINALIZING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"


FINAL_STATUSES = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.TIMEOUT})

# archivingmod_quiz's integer task states for the worker's string states (spec 9.3).
V1_STATUS_CODES: dict[JobStatus, int] = {
    JobStatus.UNINITIALIZED: 20,
    JobStatus.AWAITING_PROCESSING: 40,
    JobStatus.RUNNING: 100,
    JobStatus.WAITING_FOR_BACKUP: 200,
    JobStatus.FINALIZING: 200,
    JobStatus.FINISHED: 220,
    JobStatus.FAILED: 250,
    JobStatus.TIMEOUT: 251,
}


# What the chunked-upload statuses of process_uploaded_artifact mean (spec 2.9).
ARTIFACT_STATUS_MEANING = {
    "E_CHUNK_REASSEMBLY_FAILED": "Moodle could not put the archive together from the {n} "
    "uploaded chunks: one is missing from the draft area",
    "E_INVALID_ARTIFACT_COUNT": "Moodle refused artifact_count={n}",
}


class BackupStatus(StrEnum):
    SUCCESS = "SUCCESS"
    PENDING = "E_BACKUP_PENDING"
    FAILED = "E_BACKUP_FAILED"
    NOT_FOUND = "E_BACKUP_NOT_FOUND"


class Attachment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    slot: int = Field(ge=0)
    filename: str
    filesize: int = Field(ge=0)
    mimetype: str = ""
    contenthash: str = Field(pattern=r"^[0-9a-fA-F]{40}$")
    downloadurl: str


class AttemptReport(BaseModel):
    attemptid: int
    foldername: str
    filename: str
    report: str
    attachments: list[Attachment]


def check_file_name(name: str, what: str) -> str:
    """A single path component from Moodle that we will write to disk."""
    if (
        not name
        or name in (".", "..")
        or len(name.encode()) > 255
        or any(c in "/\\\0" or ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    ):
        raise MoodleResponseInvalid(f"Moodle returned a forbidden {what}: {name!r}")
    return name


def check_report_names(foldername: str, filename: str) -> None:
    """The reference worker's rules for folder and file names (spec 3.4)."""
    if (
        not foldername
        or foldername.startswith("/")
        or foldername.endswith("/")
        or any(c in FOLDERNAME_FORBIDDEN or ord(c) < 0x20 for c in foldername)
        or any(part in ("", ".", "..") for part in foldername.split("/"))
    ):
        raise MoodleResponseInvalid(f"Moodle returned a forbidden foldername: {foldername!r}")
    if not filename or any(c in FILENAME_FORBIDDEN or ord(c) < 0x20 for c in filename):
        raise MoodleResponseInvalid(f"Moodle returned a forbidden filename: {filename!r}")


class MoodleApi(ABC):
    """The calls one job makes, whatever plugin sent it."""

    def __init__(
        self,
        client: MoodleClient,
        task: ArchiveTask,
        job_id: str,
        allowed_download_origins: frozenset[tuple[str, str, int | None]] = frozenset(),
    ) -> None:
        self.client = client
        self.task = task
        self.job_id = job_id
        base = urlsplit(task.moodle.base_url)
        self._download_origins = allowed_download_origins | {
            (base.scheme, (base.hostname or "").lower(), base.port)
        }

    # Per-protocol specifics -----------------------------------------------------------------

    status_function: str
    report_function: str
    metadata_function: str
    artifact_function: str
    job_not_found_statuses: frozenset[str]

    @abstractmethod
    def _ids(self) -> dict[str, Any]:
        """Parameters that identify the job (status and artifact calls)."""

    def _quiz_ids(self) -> dict[str, Any]:
        """Parameters that identify the job and its quiz (report and metadata calls)."""
        return self._ids()

    @abstractmethod
    def _status_params(self, status: JobStatus, progress: int | None) -> dict[str, Any]: ...

    def _echo_ids(self) -> dict[str, Any]:
        return {}

    # Calls ----------------------------------------------------------------------------------

    def send_status(self, status: JobStatus, progress: int | None = None) -> str:
        """Tell Moodle the job's status; its answer (`OK`, `E_*`). Raises MoodleError."""
        data = self.client.call(self.status_function, self._status_params(status, progress))
        answer = str(data.get("status")) if isinstance(data, dict) else "invalid answer"
        if answer != "OK":
            log.warning("Moodle refused the status update", extra={"fields": {
                "status": str(status), "answer": answer}})
        return answer

    def update_status(self, status: JobStatus, progress: int | None = None) -> str | None:
        """Tell Moodle the job's status. Never raises: failures are logged (spec 3.3)."""
        try:
            return self.send_status(status, progress)
        except MoodleError as exc:
            log.warning("status update failed", extra={"fields": {
                "status": str(status), "error": str(exc)}})
            return None

    def generate_attempt_report(self, attemptid: int) -> AttemptReport:
        attempts = self.task.attempts
        if attempts is None:
            raise ValueError("task has no attempts")
        params = {
            **self._quiz_ids(),
            "attemptid": attemptid,
            "foldernamepattern": attempts.foldername_pattern,
            "filenamepattern": attempts.filename_pattern,
            "sections": attempts.section_flags(),
            "attachments": attempts.fetch_attachments,
        }
        data = self._expect_ok(self.report_function, self.client.call(self.report_function, params))
        self._check_echo(self.report_function, data, {**self._echo_ids(), "attemptid": attemptid})
        try:
            report = AttemptReport.model_validate(
                {k: data.get(k) for k in AttemptReport.model_fields}
            )
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            raise MoodleResponseInvalid(
                f"{self.report_function} returned an invalid response ({fields})"
            ) from None
        check_report_names(report.foldername, report.filename)
        for attachment in report.attachments:
            check_file_name(attachment.filename, "attachment file name")
            self.check_download_url(attachment.downloadurl)
        return report

    def get_attempts_metadata(self, attemptids: list[int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(attemptids), METADATA_BATCH):
            batch = attemptids[start : start + METADATA_BATCH]
            params = {**self._quiz_ids(), "attemptids": batch}
            data = self._expect_ok(
                self.metadata_function, self.client.call(self.metadata_function, params)
            )
            self._check_echo(self.metadata_function, data, self._echo_ids())
            attempts = data.get("attempts")
            if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
                raise MoodleResponseInvalid(f"{self.metadata_function} returned no attempt list")
            returned = {a.get("attemptid") for a in attempts}
            if not returned <= set(batch):
                raise MoodleResponseInvalid(
                    f"{self.metadata_function} returned attempts that were not asked for"
                )
            rows.extend(attempts)
        return rows

    def get_backup_status(self, backupid: str) -> str:
        data = self.client.call(
            "quiz_archiver_get_backup_status", {"jobid": self.job_id, "backupid": backupid}
        )
        if not isinstance(data, dict) or "status" not in data:
            raise MoodleResponseInvalid("quiz_archiver_get_backup_status returned no status")
        return str(data["status"])

    def process_uploaded_artifact(
        self, uploaded: UploadedFile, sha256: str, artifact_count: int | None = None
    ) -> None:
        """Hand the uploaded archive to the plugin. `artifact_count` (chunks uploaded, 1: the
        whole file) only for plugins that take it: older ones reject unknown parameters."""
        params = {
            **self._ids(),
            "artifact_component": uploaded.component,
            "artifact_contextid": uploaded.contextid,
            "artifact_userid": uploaded.userid,
            "artifact_filearea": uploaded.filearea,
            "artifact_filename": uploaded.filename,
            "artifact_filepath": uploaded.filepath,
            "artifact_itemid": uploaded.itemid,
            "artifact_sha256sum": sha256,
        }
        if artifact_count is not None:
            params["artifact_count"] = artifact_count
        # Not idempotent: never re-send after Moodle may have processed it.
        data = self.client.call(self.artifact_function, params, transfer=True, idempotent=False)
        try:
            self._expect_ok(self.artifact_function, data)
        except MoodleStatusError as exc:
            explained = ARTIFACT_STATUS_MEANING.get(exc.status)
            if explained is None:
                raise
            raise MoodleStatusError(
                self.artifact_function, f"{exc.status} ({explained.format(n=artifact_count)})"
            ) from None

    def probe(self) -> None:
        """Spec 3.2: call the status function without parameters; `invalidparameter` means OK."""
        try:
            self.client.call(self.status_function, {}, retries=0)
        except MoodleException as exc:
            if exc.errorcode == "invalidparameter":
                return
            raise
        raise MoodleResponseInvalid(f"{self.status_function} accepted a call without parameters")

    # Checks ---------------------------------------------------------------------------------

    def check_download_url(self, url: str) -> str:
        parts = urlsplit(url)
        origin = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)
        if (
            origin not in self._download_origins
            or "/webservice/pluginfile.php/" not in parts.path
            or any(seg in (".", "..") for seg in parts.path.split("/"))
        ):
            raise MoodleResponseInvalid(
                f"Moodle returned a download URL outside the allowed sites: "
                f"{parts.scheme}://{parts.netloc}{parts.path}"
            )
        return url

    @staticmethod
    def _expect_ok(function: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise MoodleResponseInvalid(f"{function} returned an invalid response")
        status = data.get("status")
        if status != "OK":
            raise MoodleStatusError(function, str(status))
        return data

    @staticmethod
    def _check_echo(function: str, data: dict[str, Any], expected: dict[str, Any]) -> None:
        for key, value in expected.items():
            if data.get(key) != value:
                raise MoodleResponseInvalid(
                    f"{function} answered for {key}={data.get(key)!r}, expected {value!r}"
                )


class QuizArchiverApi(MoodleApi):
    status_function = "quiz_archiver_update_job_status"
    report_function = "quiz_archiver_generate_attempt_report"
    metadata_function = "quiz_archiver_get_attempts_metadata"
    artifact_function = "quiz_archiver_process_uploaded_artifact"
    job_not_found_statuses = frozenset({"E_JOB_NOT_FOUND", "E_UPDATE_FAILED"})

    def _ids(self) -> dict[str, Any]:
        return {"jobid": self.job_id}

    def _quiz_ids(self) -> dict[str, Any]:
        return {"jobid": self.job_id, **self._echo_ids()}

    def _echo_ids(self) -> dict[str, Any]:
        return {"courseid": self.task.courseid, "cmid": self.task.cmid, "quizid": self.task.quizid}

    def _status_params(self, status: JobStatus, progress: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {"jobid": self.job_id, "status": str(status)}
        if progress is not None:
            params["statusextras"] = json.dumps({"progress": progress})
        return params


class ArchivingmodQuizApi(MoodleApi):
    status_function = "archivingmod_quiz_update_task_status"
    report_function = "archivingmod_quiz_generate_attempt_report"
    metadata_function = "archivingmod_quiz_get_attempts_metadata"
    artifact_function = "archivingmod_quiz_process_uploaded_artifact"
    job_not_found_statuses = frozenset({"E_TASK_NOT_FOUND"})

    def _ids(self) -> dict[str, Any]:
        return {"uuid": self.job_id, "taskid": self.task.taskid}

    def _status_params(self, status: JobStatus, progress: int | None) -> dict[str, Any]:
        params: dict[str, Any] = {**self._ids(), "status": V1_STATUS_CODES.get(status, 255)}
        if progress is not None:
            params["progress"] = max(0, min(100, progress))
        return params

    def get_backup_status(self, backupid: str) -> str:
        raise MoodleError("archivingmod_quiz tasks carry no backups")


def api_for(
    task: ArchiveTask,
    client: MoodleClient,
    job_id: str,
    allowed_download_origins: frozenset[tuple[str, str, int | None]] = frozenset(),
) -> MoodleApi:
    cls = QuizArchiverApi if task.protocol is Protocol.QUIZ_ARCHIVER_V7 else ArchivingmodQuizApi
    return cls(client, task, job_id, allowed_download_origins)


def probe_connection(
    task: ArchiveTask,
    token: str,
    timeout_sec: float = 8.0,
    session: requests.Session | None = None,
) -> None:
    """The gateway's synchronous check that the token works (spec 3.2), bounded in time.

    Raises ProbeFailed when Moodle answered but not as expected, MoodleUnreachable
    when it could not be reached in time. A `session` given is reused (its open
    connections too); its cookies are cleared afterwards.
    """
    client = MoodleClient(
        task.moodle,
        token,
        retries=0,
        connect_timeout=min(5.0, timeout_sec),
        read_timeout=timeout_sec,
        session=session,
    )
    try:
        api_for(task, client, job_id="").probe()
    except (MoodleException, MoodleResponseInvalid, MoodleServerError) as exc:
        raise ProbeFailed(str(exc)) from None
    finally:
        client.close()
        # The gateway probes a new token per task: do not let the redaction set grow forever.
        unregister_secret(token)
