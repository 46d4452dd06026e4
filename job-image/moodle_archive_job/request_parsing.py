"""Turn a plugin's request body into an `ArchiveTask`, with the reference worker's error messages.

The gateway answers Moodle with these messages verbatim (spec 2.3), so their text
and the order in which checks happen follow the reference worker 4.0.1. Where the
reference is lax (non-http schemes, hosts that differ between URLs, `Letter`
paper, names with control characters) this parser is stricter and says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from .task import (
    ARCHIVE_FILENAME_FORBIDDEN,
    ArchiveStructure,
    ArchiveTask,
    AttemptsTask,
    BackupTask,
    ImageOptimize,
    MoodleEndpoints,
    PaperFormat,
    Protocol,
)

API_VERSIONS = {Protocol.QUIZ_ARCHIVER_V7: 7, Protocol.ARCHIVINGMOD_QUIZ_V1: 1}

MSG_NOT_JSON = "Request payload must be JSON."
MSG_MISSING = "JSON is missing a required parameter."
MSG_STRUCTURE = "JSON is technically incomplete or missing a required parameter."
MSG_INVALID_REQUEST = "Invalid request."
MSG_INVALID_PREFIX = "JSON data is invalid: "

WS_SUFFIX = "/webservice/rest/server.php"
UPLOAD_SUFFIX = "/webservice/upload.php"
PLUGINFILE_PATH = "/webservice/pluginfile.php/"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")
_SECTION_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_BACKUP_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
MAX_ARCHIVE_FILENAME_LEN = 250
MAX_PATTERN_LEN = 1000
MAX_ATTEMPTS = 100_000


class RequestRejected(Exception):
    """A request the worker refuses; `message` is what Moodle shows the teacher."""

    def __init__(self, message: str, status_code: int = 400, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.reason = reason


class _Missing(Exception):
    pass


class _Structure(Exception):
    pass


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class ParsedRequest:
    task: ArchiveTask
    token: SecretStr


def parse_archive_request(payload: Any, protocol: Protocol) -> ParsedRequest:
    """Validate a decoded JSON body for `protocol`; raise RequestRejected with the exact message."""
    try:
        if protocol is Protocol.QUIZ_ARCHIVER_V7:
            return _parse_v7(payload)
        return _parse_v1(payload)
    except _Missing as exc:
        raise RequestRejected(MSG_MISSING, reason="missing_parameter") from exc
    except _Structure as exc:
        raise RequestRejected(MSG_STRUCTURE, reason="bad_structure") from exc
    except _Invalid as exc:
        raise RequestRejected(MSG_INVALID_PREFIX + str(exc), reason=_reason_of(str(exc))) from exc


def detect_protocol(payload: Any) -> Protocol:
    """Which plugin sent this body (used by `run-job`, where no endpoint path tells)."""
    if isinstance(payload, dict) and "moodle_api" in payload and "taskid" in payload:
        return Protocol.ARCHIVINGMOD_QUIZ_V1
    return Protocol.QUIZ_ARCHIVER_V7


def _reason_of(detail: str) -> str:
    return "api_version" if detail.startswith("API version") else "invalid"


# --- generic accessors, mirroring how the reference worker fails -------------------------------


def _get(obj: Any, key: str) -> Any:
    if not isinstance(obj, dict):
        raise _Structure(key)
    if key not in obj:
        raise _Missing(key)
    return obj[key]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_api_version(payload: Any, expected: int) -> None:
    if not isinstance(payload, dict):
        raise _Structure("payload")
    if "api_version" not in payload:
        raise _Invalid("API version missing in request payload")
    version = payload["api_version"]
    if not _is_int(version):
        raise _Invalid("API version must be an integer")
    if version != expected:
        raise _Invalid(
            f"API version mismatch. Expected: {expected}, Got: {version}. "
            "Please update your quiz-archive-worker!"
        )


# --- Moodle endpoints and token ----------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _check_http_url(url: Any, what: str) -> str:
    if not isinstance(url, str):
        raise _Structure(what)
    if not url:
        raise _Invalid(f"{what} is required")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise _Invalid(f"{what} is invalid") from exc
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or any(ord(c) < 0x21 or c in "\\" for c in url)
    ):
        raise _Invalid(f"{what} is invalid")
    return url


def _parse_endpoints(base: Any, ws: Any, upload: Any, token: Any) -> tuple[MoodleEndpoints, str]:
    base_url = _check_http_url(base, "Base URL")
    if base_url.endswith(".php"):
        raise _Invalid("Base URL is invalid")
    ws_url = _check_http_url(ws, "Webservice REST base URL")
    if not ws_url.endswith(WS_SUFFIX) or _origin(ws_url) != _origin(base_url):
        raise _Invalid("Webservice REST base URL is invalid")
    upload_url = _check_http_url(upload, "Webservice upload URL")
    if not upload_url.endswith(UPLOAD_SUFFIX) or _origin(upload_url) != _origin(base_url):
        raise _Invalid("Webservice upload URL is invalid")
    if not isinstance(token, str):
        raise _Structure("wstoken")
    if not token:
        raise _Invalid("wstoken is required")
    if not _TOKEN_RE.match(token):
        raise _Invalid("wstoken is invalid")
    return MoodleEndpoints(base_url=base_url, ws_url=ws_url, upload_url=upload_url), token


def _check_archive_filename(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_ARCHIVE_FILENAME_LEN:
        raise _Invalid("Archive filename is invalid.")
    if "/" in name:
        raise _Invalid("Archive filename must not contain a path.")
    if any(c in ARCHIVE_FILENAME_FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise _Invalid("Archive filename contains forbidden characters.")
    if name != name.strip():
        raise _Invalid("Archive filename is invalid.")
    return name


# --- the attempts task -------------------------------------------------------------------------


def _image_optimize(raw: Any) -> ImageOptimize | None:
    if raw is False or raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise _Invalid("Image optimization flag is invalid.")
    width, height, quality = _get(raw, "width"), _get(raw, "height"), _get(raw, "quality")
    if not _is_int(width) or width < 1:
        raise _Invalid("Image optimization width is invalid.")
    if not _is_int(height) or height < 1:
        raise _Invalid("Image optimization height is invalid.")
    if not _is_int(quality) or not 0 <= quality <= 100:
        raise _Invalid("Image optimization quality is invalid.")
    return ImageOptimize(width=width, height=height, quality=quality)


def _attempt_ids(raw: Any) -> list[int]:
    if (
        not isinstance(raw, list)
        or not raw
        or len(raw) > MAX_ATTEMPTS
        or not all(_is_int(i) and i > 0 for i in raw)
        or len(set(raw)) != len(raw)
    ):
        raise _Invalid("Attempt ID list is invalid.")
    return raw


def _sections(raw: Any) -> dict[str, str | int]:
    if not isinstance(raw, dict):
        raise _Structure("sections")
    if not raw or not all(
        isinstance(k, str) and _SECTION_NAME_RE.match(k) and v in ("0", "1", 0, 1) and v is not True
        for k, v in raw.items()
    ):
        raise _Invalid("Attempt report sections are invalid.")
    return raw


def _paper_format(raw: Any) -> PaperFormat:
    if not isinstance(raw, str):
        raise _Invalid("Paper format is invalid.")
    try:
        return PaperFormat.parse(raw)
    except ValueError as exc:
        raise _Invalid("Paper format is invalid.") from exc


def _pattern(raw: Any, what: str, allow_empty: bool) -> str:
    if not isinstance(raw, str) or (not raw and not allow_empty) or len(raw) > MAX_PATTERN_LEN:
        raise _Invalid(f"{what} is invalid.")
    if "\0" in raw:
        raise _Invalid(f"{what} is invalid.")
    return raw


def _flag(raw: Any, what: str) -> bool:
    if not isinstance(raw, bool):
        raise _Invalid(f"{what} flag is invalid.")
    return raw


def _attempts_task(
    attemptids: Any,
    sections: Any,
    fetch_metadata: Any,
    fetch_attachments: Any,
    paper_format: PaperFormat,
    keep_html_files: Any,
    foldername_pattern: Any,
    filename_pattern: Any,
    image_optimize: ImageOptimize | None,
) -> AttemptsTask:
    return AttemptsTask(
        attemptids=_attempt_ids(attemptids),
        sections=_sections(sections),
        fetch_metadata=_flag(fetch_metadata, "Fetch metadata"),
        fetch_attachments=_flag(fetch_attachments, "Fetch attachments"),
        paper_format=paper_format,
        keep_html_files=_flag(keep_html_files, "Keep HTML files"),
        foldername_pattern=_pattern(foldername_pattern, "Folder name pattern", allow_empty=False),
        filename_pattern=_pattern(filename_pattern, "Filename pattern", allow_empty=True),
        image_optimize=image_optimize,
    )


# --- backups -----------------------------------------------------------------------------------


def _backup(raw: Any, base_url: str) -> BackupTask:
    backupid, filename, url = (
        _get(raw, "backupid"),
        _get(raw, "filename"),
        _get(raw, "file_download_url"),
    )
    if not isinstance(backupid, str) or not _BACKUP_ID_RE.match(backupid):
        raise _Invalid("Moodle backup ID is invalid.")
    if (
        not isinstance(filename, str)
        or not filename
        or len(filename) > 255
        or filename in (".", "..")
        or filename.startswith(".")
        or any(c in '/\\:*?"<>|' or ord(c) < 0x20 or ord(c) == 0x7F for c in filename)
    ):
        raise _Invalid("Moodle backup filename is invalid.")
    if (
        not isinstance(url, str)
        or not url.startswith(base_url.rstrip("/") + PLUGINFILE_PATH)
        or _origin(url) != _origin(base_url)
        or any(seg in ("..", ".") for seg in urlsplit(url).path.split("/"))
        or any(ord(c) < 0x21 or c == "\\" for c in url)
    ):
        raise _Invalid("Moodle backup file download URL is invalid.")
    return BackupTask(backupid=backupid, filename=filename, file_download_url=url)


def _backups(raw: Any, base_url: str) -> list[BackupTask]:
    if not raw:
        return []
    if not isinstance(raw, list):
        raise _Structure("task_moodle_backups")
    backups = [_backup(item, base_url) for item in raw]
    names = [b.filename for b in backups]
    if len(set(names)) != len(names):
        raise _Invalid("Moodle backup filename is invalid.")
    return backups


# --- options of newer plugins (absent from older requests) ---------------------------------------


def _max_upload_bytes(container: dict[str, Any], key: str) -> int | None:
    """Moodle's upload limit, sent by plugins that reassemble chunked uploads (spec 2.9)."""
    if key not in container:
        return None
    raw = container[key]
    if not _is_int(raw) or raw < 1:
        raise _Invalid("Moodle max upload bytes is invalid.")
    return raw


def _archive_options(container: dict[str, Any]) -> dict[str, Any]:
    """Worker 5.0's `archive_flatten` and `archive_filehashes`, where the request has them."""
    options: dict[str, Any] = {}
    if "archive_flatten" in container:
        flat = _flag(container["archive_flatten"], "Archive flatten")
        options["archive_structure"] = ArchiveStructure.FLAT if flat else ArchiveStructure.NESTED
    if "archive_filehashes" in container:
        options["checksum_sidecars"] = _flag(container["archive_filehashes"], "Archive filehashes")
    return options


# --- the two request formats -------------------------------------------------------------------


def _check_ids(*ids: Any) -> None:
    if not all(_is_int(i) and i > 0 for i in ids):
        raise _Invalid(
            "Either the 3-tuple courseid, cmid and quizid or taskid must be given "
            "to create an archive request."
        )


def _parse_v7(payload: Any) -> ParsedRequest:
    _check_api_version(payload, API_VERSIONS[Protocol.QUIZ_ARCHIVER_V7])
    endpoints, token = _parse_endpoints(
        _get(payload, "moodle_base_url"),
        _get(payload, "moodle_ws_url"),
        _get(payload, "moodle_upload_url"),
        _get(payload, "wstoken"),
    )
    courseid, cmid, quizid = (_get(payload, k) for k in ("courseid", "cmid", "quizid"))
    archive_filename = _get(payload, "archive_filename")
    _check_ids(courseid, cmid, quizid)
    _check_archive_filename(archive_filename)
    max_upload_bytes = _max_upload_bytes(payload, "moodle_max_upload_bytes")
    options = _archive_options(payload)

    attempts = None
    raw_attempts = _get(payload, "task_archive_quiz_attempts")
    if raw_attempts:
        image_optimize = _image_optimize(_get(raw_attempts, "image_optimize"))
        attemptids = _get(raw_attempts, "attemptids")
        sections = _get(raw_attempts, "sections")
        fetch_metadata = _get(raw_attempts, "fetch_metadata")
        # The reference derives the attachments flag by a string comparison with "1".
        fetch_attachments = _get(sections, "attachments") == "1"
        paper_format = _paper_format(_get(raw_attempts, "paper_format"))
        attempts = _attempts_task(
            attemptids,
            sections,
            fetch_metadata,
            fetch_attachments,
            paper_format,
            _get(raw_attempts, "keep_html_files"),
            _get(raw_attempts, "foldername_pattern"),
            _get(raw_attempts, "filename_pattern"),
            image_optimize,
        )
    elif raw_attempts not in (None, False, {}, []):
        raise _Structure("task_archive_quiz_attempts")

    backups = _backups(_get(payload, "task_moodle_backups"), endpoints.base_url)
    task = ArchiveTask(
        protocol=Protocol.QUIZ_ARCHIVER_V7,
        moodle=endpoints,
        archive_filename=archive_filename,
        courseid=courseid,
        cmid=cmid,
        quizid=quizid,
        attempts=attempts,
        backups=backups,
        moodle_max_upload_bytes=max_upload_bytes,
        **options,
    )
    return ParsedRequest(task=task, token=SecretStr(token))


def _parse_v1(payload: Any) -> ParsedRequest:
    _check_api_version(payload, API_VERSIONS[Protocol.ARCHIVINGMOD_QUIZ_V1])
    api = _get(payload, "moodle_api")
    endpoints, token = _parse_endpoints(
        _get(api, "base_url"),
        _get(api, "webservice_url"),
        _get(api, "upload_url"),
        _get(api, "wstoken"),
    )
    taskid = _get(payload, "taskid")
    job = _get(payload, "job")
    archive_filename = _get(job, "archive_filename")
    _check_ids(taskid)
    _check_archive_filename(archive_filename)
    max_upload_bytes = _max_upload_bytes(api, "max_upload_bytes")
    options = _archive_options(job)

    image_optimize = _image_optimize(_get(job, "image_optimize"))
    attempts = _attempts_task(
        _get(job, "attemptids"),
        _get(job, "report_sections"),
        _get(job, "fetch_metadata"),
        _get(job, "fetch_attachments"),
        _paper_format(_get(job, "paper_format")),
        _get(job, "keep_html_files"),
        _get(job, "foldername_pattern"),
        _get(job, "filename_pattern"),
        image_optimize,
    )
    task = ArchiveTask(
        protocol=Protocol.ARCHIVINGMOD_QUIZ_V1,
        moodle=endpoints,
        archive_filename=archive_filename,
        taskid=taskid,
        attempts=attempts,
        moodle_max_upload_bytes=max_upload_bytes,
        **options,
    )
    return ParsedRequest(task=task, token=SecretStr(token))
