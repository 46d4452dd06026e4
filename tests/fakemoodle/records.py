"""The record of every request the fake Moodle received (tokens never stored in clear)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

TOKEN_PARAMS = ("wstoken", "token")


def token_hash(token: str) -> str:
    """A short, stable fingerprint of a token for records and logs."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def redact(params: Any) -> Any:
    """Copy of decoded parameters with token values replaced by ``<redacted:HASH>``."""
    if isinstance(params, dict):
        return {
            k: (
                f"<redacted:{token_hash(v)}>"
                if k in TOKEN_PARAMS and isinstance(v, str)
                else redact(v)
            )
            for k, v in params.items()
        }
    if isinstance(params, list):
        return [redact(v) for v in params]
    return params


@dataclass
class CallRecord:
    """One HTTP request.

    ``endpoint`` is ``"rest"``, ``"upload"``, ``"pluginfile"``, ``"mathjax"``, ``"static"``,
    ``"login"`` or ``"other"``. ``params`` are the decoded GET+POST parameters with tokens
    redacted; ``token_valid`` tells whether the request's token was known and unexpired when it
    arrived (``None`` when the request had no token). ``response_status`` is the ``status`` field
    of a web service answer (``"OK"``, ``"E_ACCESS_DENIED"``, ...) or the ``errorcode`` of an error
    object. ``jobid`` is the worker job id (or task uuid) the call belongs to, when known.
    """

    time: float
    endpoint: str
    method: str
    path: str
    wsfunction: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    token_hash: str | None = None
    token_valid: bool | None = None
    http_status: int = 0
    response_status: str | None = None
    errorcode: str | None = None
    jobid: str | None = None
    taskid: int | None = None
    fault: str | None = None
    duration: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    notes: list[str] = field(default_factory=list)


class Recorder:
    """Thread-safe list of :class:`CallRecord`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []

    def add(self, record: CallRecord) -> CallRecord:
        with self._lock:
            self._records.append(record)
        return record

    def all(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
