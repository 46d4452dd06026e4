"""The job's input contract: one archive task, independent of the plugin that sent it.

Both plugin request formats (quiz_archiver API v7, archivingmod_quiz API v1) are
normalised into `ArchiveTask` by `request_parsing`. The token is never part of
this model: it travels separately (a Secret in Kubernetes, a file for the pod).
The gateway and the operator import these models; keep them free of I/O.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Characters Moodle removes from file and folder names (spec 5.3); names never contain a dot.
FILENAME_FORBIDDEN = frozenset('\\.:;*?!"<>|\0/')
FOLDERNAME_FORBIDDEN = FILENAME_FORBIDDEN - {"/"}
# What the reference worker rejects in archive_filename (spec 2.2).
ARCHIVE_FILENAME_FORBIDDEN = frozenset('\0\\/:*?"<>|.')


class Protocol(StrEnum):
    QUIZ_ARCHIVER_V7 = "quiz_archiver/v7"
    ARCHIVINGMOD_QUIZ_V1 = "archivingmod_quiz/v1"


class PaperFormat(StrEnum):
    A0 = "A0"
    A1 = "A1"
    A2 = "A2"
    A3 = "A3"
    A4 = "A4"
    A5 = "A5"
    A6 = "A6"
    LETTER = "Letter"
    LEGAL = "Legal"
    TABLOID = "Tabloid"
    LEDGER = "Ledger"

    @classmethod
    def parse(cls, value: str) -> PaperFormat:
        """Accept any case (the reference worker only took the A formats)."""
        for member in cls:
            if member.value.lower() == value.strip().lower():
                return member
        raise ValueError(f"Paper format is invalid: {value!r}.")


class ArchiveStructure(StrEnum):
    """Worker 5.0's archive layouts: `nested` is the 4.x layout (spec 5.2), `flat` puts every
    file at the top level with a prefix naming what it is (`archive_flatten`)."""

    NESTED = "nested"
    FLAT = "flat"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageOptimize(_Frozen):
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    quality: int = Field(ge=0, le=100)


class MoodleEndpoints(_Frozen):
    base_url: str
    ws_url: str
    upload_url: str


class AttemptsTask(_Frozen):
    attemptids: list[int] = Field(min_length=1)
    fetch_metadata: bool = True
    # Forwarded verbatim to Moodle: values are "1"/"0" strings or int 0 (spec 2.2).
    sections: dict[str, str | int] = Field(min_length=1)
    fetch_attachments: bool = False
    paper_format: PaperFormat = PaperFormat.A4
    keep_html_files: bool = False
    foldername_pattern: str = Field(min_length=1)
    filename_pattern: str
    image_optimize: ImageOptimize | None = None

    @field_validator("attemptids")
    @classmethod
    def _positive_unique(cls, ids: list[int]) -> list[int]:
        if any(i <= 0 for i in ids):
            raise ValueError("attempt ids must be positive")
        if len(set(ids)) != len(ids):
            raise ValueError("attempt ids must be unique")
        return ids

    def section_flags(self) -> dict[str, int]:
        """Sections as Moodle PARAM_BOOL values (1/0)."""
        return {name: 1 if str(value) == "1" else 0 for name, value in self.sections.items()}


class BackupTask(_Frozen):
    backupid: str = Field(min_length=1)
    filename: str = Field(min_length=1)
    file_download_url: str = Field(min_length=1)


class ArchiveTask(_Frozen):
    """Everything one job needs, except the token."""

    protocol: Protocol
    moodle: MoodleEndpoints
    archive_filename: str = Field(min_length=1)
    # quiz_archiver/v7 identifies the quiz; archivingmod_quiz/v1 identifies a task.
    courseid: int | None = None
    cmid: int | None = None
    quizid: int | None = None
    taskid: int | None = None
    attempts: AttemptsTask | None = None
    backups: list[BackupTask] = Field(default_factory=list)
    # Moodle's upload limit, sent by plugins that reassemble chunked uploads (spec 2.9);
    # None: the plugin (quiz_archiver 4.1.0 and older) takes the archive whole only.
    moodle_max_upload_bytes: int | None = Field(default=None, gt=0)
    # Archive options of worker 5.0 (`archive_flatten`, `archive_filehashes` in its requests);
    # None: the runner's settings decide.
    archive_structure: ArchiveStructure | None = None
    checksum_sidecars: bool | None = None

    @property
    def takes_chunks(self) -> bool:
        """Whether the plugin reassembles chunked uploads (and takes `artifact_count`)."""
        return self.moodle_max_upload_bytes is not None

    @property
    def attempt_count(self) -> int:
        return len(self.attempts.attemptids) if self.attempts else 0

    @property
    def archive_name(self) -> str:
        return f"{self.archive_filename}.zip"
