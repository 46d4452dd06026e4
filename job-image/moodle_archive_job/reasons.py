"""Reasons an admin reads in `kubectl get/describe archivejob`: one line, a few hundred characters.

`one_line` is for every condition and status message. `condense` finds the cause in text
that may be a pod's log tail (a termination message under FallbackToLogsOnError: JSON log
lines, a traceback) and makes one line of it. Both redact tokens.
"""

from __future__ import annotations

import json
from typing import Any

from .logs import redact

MAX_REASON = 300
_ELLIPSIS = "..."
_ERROR_LEVELS = ("ERROR", "CRITICAL", "FATAL")
_RUNNER_PREFIX = "moodle-archiver: "


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """`text` redacted, its whitespace (line breaks too) collapsed, clipped to `limit`."""
    flat = " ".join(redact(text).split())
    if len(flat) <= limit:
        return flat
    return flat[: max(0, limit - len(_ELLIPSIS))].rstrip() + _ELLIPSIS


def condense(text: str, limit: int = MAX_REASON) -> str:
    """The cause stated in `text`, as one line.

    Looked for from the end: the runner's own last line ("moodle-archiver: Failed: ..."),
    then the last JSON log record at ERROR level (its message and error field), then the
    last line that is not a JSON record (e.g. a traceback's final line), then the last
    record's message.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    records: list[dict[str, Any]] = []
    plain: list[str] = []
    for line in lines:
        record = _record(line)
        if record is not None:
            records.append(record)
        else:
            plain.append(line)
    for line in reversed(plain):
        if line.startswith(_RUNNER_PREFIX):
            return one_line(line.removeprefix(_RUNNER_PREFIX), limit)
    for record in reversed(records):
        if str(record.get("level", "")).upper() in _ERROR_LEVELS:
            return one_line(_describe(record), limit)
    if plain:
        return one_line(plain[-1], limit)
    return one_line(_describe(records[-1]), limit)


def _record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _describe(record: dict[str, Any]) -> str:
    message = str(record.get("message") or "")
    error = str(record.get("error") or "")
    if error and error not in message:
        return f"{message}: {error}" if message else error
    return message or error or json.dumps(record)[:MAX_REASON]
