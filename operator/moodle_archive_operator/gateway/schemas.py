"""Pydantic models of the gateway's HTTP boundary, for answers and for `/openapi.json`.

Request bodies are *not* validated by FastAPI: `parse_archive_request` does that with
the reference worker's exact messages. The request models below only document the
plugins' bodies (spec 2.2 and 9.3) in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    error: str


class ArchiveAccepted(BaseModel):
    jobid: str = Field(description="Worker job id (UUID), unique forever")
    status: Literal["AWAITING_PROCESSING"] = "AWAITING_PROCESSING"


class AppInfo(BaseModel):
    app: str
    version: str


class VersionInfo(BaseModel):
    version: str


class WorkerStatus(BaseModel):
    status: Literal["IDLE", "ACTIVE", "BUSY", "UNAVAILABLE", "UNKNOWN"]
    jobs_processing: list[str]
    jobs_queued: list[str]
    jobs_max: int
    queue_max: int


class JobStatus(BaseModel):
    id: str
    status: str


class Health(BaseModel):
    status: str


# --- request bodies (documentation only) -------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageOptimizeDoc(_Doc):
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    quality: int = Field(ge=0, le=100)


class AttemptsTaskDoc(_Doc):
    attemptids: list[int] = Field(min_length=1)
    fetch_metadata: bool
    sections: dict[str, str | int]
    paper_format: str
    keep_html_files: bool
    foldername_pattern: str
    filename_pattern: str
    image_optimize: Literal[False] | ImageOptimizeDoc


class BackupDoc(_Doc):
    backupid: str
    filename: str
    file_download_url: str


class QuizArchiverV7Request(_Doc):
    """quiz_archiver API v7 (`POST /archive`)."""

    api_version: Literal[7]
    moodle_base_url: str
    moodle_ws_url: str
    moodle_upload_url: str
    wstoken: str
    courseid: int
    cmid: int
    quizid: int
    archive_filename: str
    task_archive_quiz_attempts: AttemptsTaskDoc | None
    task_moodle_backups: list[BackupDoc] | None


class MoodleApiDoc(_Doc):
    wstoken: str
    base_url: str
    webservice_url: str
    upload_url: str


class JobDoc(_Doc):
    attemptids: list[int] = Field(min_length=1)
    report_sections: dict[str, str | int]
    paper_format: str
    archive_filename: str
    foldername_pattern: str
    filename_pattern: str
    image_optimize: Literal[False] | ImageOptimizeDoc
    fetch_metadata: bool
    fetch_attachments: bool
    keep_html_files: bool


class ArchivingmodQuizV1Request(_Doc):
    """archivingmod_quiz API v1 (`POST /archive/archivingmod_quiz`)."""

    api_version: Literal[1]
    taskid: int
    moodle_api: MoodleApiDoc
    job: JobDoc


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}
