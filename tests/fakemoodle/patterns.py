"""File and folder name patterns (``${variable}``) as Moodle validates, expands and sanitises them.

Two flavours exist:

* ``quiz_archiver`` (``ArchiveJob``): folder names are sanitised by removing forbidden
  characters and trimming the whole path of whitespace and slashes, then each segment is cut to
  240 bytes.
* ``archivingmod_quiz`` (``local_archiving\\storage``): folder segments are trimmed one by one and
  empty segments dropped. QUIRK: the quiz driver swaps the two sanitisers, so the attempt
  *folder* name is sanitised as a file name (every ``/`` removed) and the attempt *file* name as
  a folder name. :func:`expand_attempt_name` reproduces that when ``flavour="archivingmod_quiz"``.

Variable values are cut to 128 bytes, the result to 240 bytes (``substr`` works on bytes).
Values are inserted with ``preg_replace``, so ``$1``-like text inside a value is a
back-reference (and vanishes); that is reproduced too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .php import PHP_TRIM_CHARS, preg_replace_all, substr_bytes

FILENAME_VARIABLE_MAX_LENGTH = 128
FILENAME_MAX_LENGTH = 240

ARCHIVE_FILENAME_VARIABLES = (
    "courseid",
    "coursename",
    "courseshortname",
    "cmid",
    "quizid",
    "quizname",
    "date",
    "time",
    "timestamp",
)
ATTEMPT_FILENAME_VARIABLES = (
    "courseid",
    "coursename",
    "courseshortname",
    "cmid",
    "groupids",
    "groupidnumbers",
    "groupnames",
    "quizid",
    "quizname",
    "attemptid",
    "username",
    "firstname",
    "lastname",
    "idnumber",
    "timestart",
    "timefinish",
    "date",
    "time",
    "timestamp",
)
ATTEMPT_FOLDERNAME_VARIABLES = ATTEMPT_FILENAME_VARIABLES
# local_archiving's archive name variables (archivingmod_quiz / API v1).
LA_ARCHIVE_FILENAME_VARIABLES = (
    "courseid",
    "coursename",
    "courseshortname",
    "cmid",
    "cmtype",
    "cmname",
    "date",
    "time",
    "timestamp",
)

FOLDERNAME_FORBIDDEN_CHARACTERS = ("\\", ".", ":", ";", "*", "?", "!", '"', "<", ">", "|", "\x00")
FILENAME_FORBIDDEN_CHARACTERS = (*FOLDERNAME_FORBIDDEN_CHARACTERS, "/")

DEFAULT_ARCHIVE_FILENAME_PATTERN = (
    "quiz-archive-${courseshortname}-${courseid}-${quizname}-${quizid}-${date}_${time}"
)
DEFAULT_LA_ARCHIVE_FILENAME_PATTERN = (
    "archive-${courseshortname}-${courseid}-${cmtype}-${cmname}-${cmid}_${date}-${time}"
)
DEFAULT_FOLDERNAME_PATTERN = "${username}/${attemptid}-${date}_${time}"
DEFAULT_FILENAME_PATTERN = "attempt-${attemptid}-${username}-${date}_${time}"

Flavour = Literal["quiz_archiver", "archivingmod_quiz"]


def is_valid_pattern(pattern: str, variables: Sequence[str], forbidden: Sequence[str]) -> bool:
    """``is_valid_filename_pattern()``: only known ``${var}``, no stray ``$``, no forbidden char."""
    if len(pattern.encode("utf-8")) < 1:
        return False
    residue = re.sub(r"\$\{\s*(" + "|".join(variables) + r")\s*\}", "", pattern, flags=re.M)
    if "$" in residue:
        return False
    return not any(char in pattern for char in forbidden)


def is_valid_archive_filename_pattern(pattern: str) -> bool:
    return is_valid_pattern(pattern, ARCHIVE_FILENAME_VARIABLES, FILENAME_FORBIDDEN_CHARACTERS)


def is_valid_attempt_filename_pattern(pattern: str) -> bool:
    return is_valid_pattern(pattern, ATTEMPT_FILENAME_VARIABLES, FILENAME_FORBIDDEN_CHARACTERS)


def is_valid_attempt_foldername_pattern(pattern: str, flavour: Flavour = "quiz_archiver") -> bool:
    """quiz_archiver also denies a leading or trailing ``/``; archivingmod_quiz does not."""
    if flavour == "quiz_archiver" and (not pattern or pattern[0] == "/" or pattern[-1] == "/"):
        return False
    return is_valid_pattern(pattern, ATTEMPT_FOLDERNAME_VARIABLES, FOLDERNAME_FORBIDDEN_CHARACTERS)


def substitute(pattern: str, data: Mapping[str, Any]) -> str:
    """Replace every ``${key}`` in the order of ``data`` like the plugins' preg_replace loop."""
    result = pattern
    for key, value in data.items():
        text = value if isinstance(value, str) else str(value)
        replacement = substr_bytes(text, FILENAME_VARIABLE_MAX_LENGTH)
        result = preg_replace_all(
            re.compile(r"\$\{\s*" + key + r"\s*\}", re.M), replacement, result
        )
    return result


def _remove(text: str, chars: Sequence[str]) -> str:
    for char in chars:
        text = text.replace(char, "")
    return text


def sanitize_filename(name: str) -> str:
    """Remove forbidden characters, trim, cut to 240 bytes."""
    return substr_bytes(
        _remove(name, FILENAME_FORBIDDEN_CHARACTERS).strip(PHP_TRIM_CHARS), FILENAME_MAX_LENGTH
    )


_FOLDER_TRIM = PHP_TRIM_CHARS + "/\\"


def sanitize_foldername(name: str, flavour: Flavour = "quiz_archiver") -> str:
    """Remove forbidden characters, trim slashes/whitespace, cut every segment to 240 bytes."""
    res = _remove(name, FOLDERNAME_FORBIDDEN_CHARACTERS).strip(_FOLDER_TRIM)
    parts = res.split("/")
    if flavour == "quiz_archiver":
        return "/".join(substr_bytes(part, FILENAME_MAX_LENGTH) for part in parts)
    trimmed = [substr_bytes(part.strip(_FOLDER_TRIM), FILENAME_MAX_LENGTH) for part in parts]
    return "/".join(part for part in trimmed if part and part != "0")


def _or(value: Any, fallback: Any) -> Any:
    """PHP's ``$value ?: $fallback``."""
    if value is None or value == "" or value == 0 or value == "0":
        return fallback
    return value


def _clock(now: float | None) -> dict[str, Any]:
    """``timestamp``, ``date`` (Y-m-d) and ``time`` (H-i-s) in the server's local time."""
    now = time.time() if now is None else now
    local = time.localtime(now)
    return {
        "timestamp": int(now),
        "date": time.strftime("%Y-%m-%d", local),
        "time": time.strftime("%H-%M-%S", local),
    }


def archive_filename_data(
    *,
    courseid: int,
    coursename: str,
    courseshortname: str,
    cmid: int,
    quizid: int,
    quizname: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The variables of ``ArchiveJob::generate_archive_filename()`` in the plugin's order."""
    return {
        "courseid": _or(courseid, 0),
        "cmid": _or(cmid, 0),
        "quizid": _or(quizid, 0),
        "coursename": _or(coursename, "null"),
        "courseshortname": _or(courseshortname, "null"),
        "quizname": _or(quizname, "null"),
        **_clock(now),
    }


def la_archive_filename_data(
    *,
    courseid: int,
    coursename: str,
    courseshortname: str,
    cmid: int,
    cmname: str,
    cmtype: str = "quiz",
    now: float | None = None,
) -> dict[str, Any]:
    """The variables of local_archiving's ``archive_job::generate_archive_name_prefix()``."""
    clock = _clock(now)
    return {
        "courseid": _or(courseid, 0),
        "coursename": _or(coursename, "null"),
        "courseshortname": _or(courseshortname, "null"),
        "cmid": _or(cmid, 0),
        "cmtype": _or(cmtype, "null"),
        "cmname": _or(cmname, "null"),
        "date": clock["date"],
        "time": clock["time"],
        "timestamp": clock["timestamp"],
    }


def attempt_name_data(
    *,
    courseid: int,
    coursename: str,
    courseshortname: str,
    cmid: int,
    quizid: int,
    quizname: str,
    attemptid: int,
    username: str,
    firstname: str,
    lastname: str,
    idnumber: str,
    timestart: int,
    timefinish: int,
    groups: Sequence[Mapping[str, Any]] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """The variables of ``generate_attempt_filename()``/``..._foldername()`` in the plugin's order.

    ``groups`` are mappings with ``id``, ``idnumber`` and ``name``.
    """
    return {
        "courseid": _or(courseid, 0),
        "cmid": _or(cmid, 0),
        "quizid": _or(quizid, 0),
        "attemptid": _or(attemptid, 0),
        "coursename": _or(coursename, "null"),
        "courseshortname": _or(courseshortname, "null"),
        "groupids": _or("-".join(str(g["id"]) for g in groups), 0),
        "groupidnumbers": _or("-".join(str(_or(g.get("idnumber"), "null")) for g in groups), 0),
        "groupnames": _or("-".join(str(g["name"]) for g in groups), "nogroup"),
        "quizname": _or(quizname, "null"),
        **_clock(now),
        "timestart": _or(timestart, 0),
        "timefinish": _or(timefinish, 0),
        "username": _or(username, "null"),
        "firstname": _or(firstname, "null"),
        "lastname": _or(lastname, "null"),
        "idnumber": _or(idnumber, "null"),
    }


def expand_archive_filename(pattern: str, data: Mapping[str, Any]) -> str:
    """Expand and sanitise an archive file name (raises ``ValueError`` for an invalid pattern)."""
    if not is_valid_archive_filename_pattern(pattern) and not is_valid_pattern(
        pattern, LA_ARCHIVE_FILENAME_VARIABLES, FILENAME_FORBIDDEN_CHARACTERS
    ):
        raise ValueError(f"invalid archive filename pattern: {pattern!r}")
    return sanitize_filename(substitute(pattern, data))


def expand_attempt_name(
    pattern: str, data: Mapping[str, Any], *, folder: bool, flavour: Flavour = "quiz_archiver"
) -> str:
    """Expand and sanitise an attempt folder name (``folder=True``) or file name.

    For ``flavour="archivingmod_quiz"`` the sanitisers are swapped like the driver does.
    """
    expanded = substitute(pattern, data)
    if flavour == "archivingmod_quiz":
        return sanitize_filename(expanded) if folder else sanitize_foldername(expanded, flavour)
    return sanitize_foldername(expanded, flavour) if folder else sanitize_filename(expanded)
