"""Logging for every component: JSON lines (or plain text on a terminal) with secret redaction.

Secrets are registered once (`register_secret`) and replaced by `***` in every
formatted record, whatever logger or library produced it. Query parameters that
carry Moodle tokens (`wstoken=`, `token=`) are masked even when the value was
never registered.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime

REDACTED = "***"
_TOKEN_PARAM_RE = re.compile(r"((?:ws)?token=)[^&\s\"']+", re.IGNORECASE)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Never let `value` appear in a log line again (in this process)."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _secrets_lock:
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def unregister_secret(value: str) -> None:
    """Forget a secret again (long-running services: keeps the set and the pattern small)."""
    global _pattern
    with _secrets_lock:
        _secrets.discard(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _TOKEN_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(text)


def configure_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Route all logging to stderr; JSON unless stderr is a terminal (or `json_lines` says)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if level.upper() != "WARN" else "WARNING")
    # Libraries that would log URLs or bodies at DEBUG stay at INFO or above.
    for noisy in ("urllib3", "asyncio", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
