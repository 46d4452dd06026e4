"""Telling Moodle a job's end, and what Moodle's answer means for whoever must retry it.

A job ends at Moodle in one of three ways: the worker sends FAILED or TIMEOUT
(`update_status`), or Moodle processes the uploaded archive and sets FINISHED itself
(`process_uploaded_artifact`). `deliver` makes that one call and returns Moodle's
answer as a short string (never raises); `verdict` says whether the end has reached
Moodle, can never reach it, or is worth another try. The runner and the operator
(which redelivers what the runner could not) share both.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from .moodle_api import JobStatus, MoodleApi
from .moodle_client import (
    MoodleError,
    MoodleException,
    MoodleServerError,
    MoodleStatusError,
    MoodleUnreachable,
    UploadedFile,
)

# Answers that are not Moodle's own status codes.
UNREACHABLE = "Unreachable"
SERVER_ERROR = "ServerError"
INVALID_ANSWER = "InvalidAnswer"
NO_TOKEN = "NoToken"  # noqa: S105 - an answer name


class Verdict(StrEnum):
    DELIVERED = "Delivered"  # Moodle took this end
    ALREADY_FINAL = "AlreadyFinal"  # Moodle had ended the job before (its token is gone)
    REFUSED = "Refused"  # Moodle answered for good: another try cannot change it
    RETRY = "Retry"  # no answer, or one that may change (Moodle down, job row not yet there)


# Moodle deletes a job's token on every final status, so `invalidtoken` (a token that does
# not exist) means the job is over; an expired token is `accessexception`, left to the
# deadline. Processing failures make Moodle set FAILED itself (spec 3.8, 9).
_ALREADY_FINAL = frozenset({
    "invalidtoken", "E_JOB_ALREADY_COMPLETED", "E_NO_ARTIFACT_UPLOAD_EXPECTED",
    "E_NO_UPLOAD_EXPECTED",
})  # fmt: skip
_REFUSED = frozenset({
    "E_ACCESS_DENIED", "E_UPLOADED_ARTIFACT_NOT_FOUND", "E_ARTIFACT_CHECKSUM_INVALID",
    "E_STORE_ARTIFACT_FAILED", "E_FILE_NOT_FOUND", "E_CHECKSUM_MISMATCH", "E_STORING_FAILED",
    NO_TOKEN,
})  # fmt: skip


def verdict(answer: str) -> Verdict:
    if answer == "OK":
        return Verdict.DELIVERED
    if answer in _ALREADY_FINAL:
        return Verdict.ALREADY_FINAL
    if answer in _REFUSED:
        return Verdict.REFUSED
    return Verdict.RETRY


class PendingArtifact(UploadedFile):
    """What `process_uploaded_artifact` needs once the archive is in Moodle's draft area:
    upload.php's answer and the checksum (nothing secret: the draft is only reachable with
    the job's token). Its JSON is the ArchiveJob's `status.pendingArtifact`."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Chunks uploaded (chunked_upload.py); None: a plugin that takes no artifact_count.
    artifact_count: int | None = Field(default=None, ge=1, alias="artifactCount")

    @classmethod
    def of(
        cls, uploaded: UploadedFile, sha256: str, artifact_count: int | None = None
    ) -> PendingArtifact:
        return cls(**uploaded.model_dump(), sha256=sha256.lower(), artifact_count=artifact_count)


class ProcessingUndelivered(Exception):
    """The archive is in Moodle's draft area, but the processing call got no answer."""

    def __init__(self, artifact: PendingArtifact, cause: MoodleError) -> None:
        super().__init__(
            f"the archive was uploaded, but asking Moodle to process it failed: {cause}"
        )
        self.artifact = artifact


def deliver(api: MoodleApi, status: JobStatus, artifact: PendingArtifact | None = None) -> str:
    """Send FAILED/TIMEOUT, or (status FINISHED) have Moodle process the uploaded `artifact`.

    Moodle's answer: `OK`, an `E_*` status, a Moodle error code, or one of UNREACHABLE,
    SERVER_ERROR, INVALID_ANSWER. The processing call is never retried inside (it is not
    idempotent); whether to call again is the caller's decision, by `verdict`.
    """
    try:
        if status is JobStatus.FINISHED:
            if artifact is None:
                raise ValueError("FINISHED is delivered by processing an uploaded artifact")
            api.process_uploaded_artifact(artifact, artifact.sha256, artifact.artifact_count)
            return "OK"
        return api.send_status(status)
    except MoodleStatusError as exc:
        return exc.status
    except MoodleException as exc:
        return exc.errorcode
    except MoodleUnreachable:
        return UNREACHABLE
    except MoodleServerError:
        return SERVER_ERROR
    except MoodleError:
        return INVALID_ANSWER


def describe(answer: str) -> str:
    """One line for a status message or an Event (no token: answers are codes)."""
    return {
        UNREACHABLE: "Moodle could not be reached",
        SERVER_ERROR: "Moodle answered with a server error",
        INVALID_ANSWER: "Moodle's answer was not understood",
        NO_TOKEN: "the token Secret is gone",
    }.get(answer, f"Moodle answered {answer}")
