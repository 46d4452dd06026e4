"""Fault and latency injection for the fake Moodle.

Targets name what a fault applies to. Every request has a list of targets, most specific first:

* REST calls: the wsfunction name (``"quiz_archiver_generate_attempt_report"``), then the alias
  ``"report"`` for both report functions, then ``"rest"``;
* ``"upload"`` (webservice/upload.php);
* pluginfile downloads: ``"pluginfile:backup"`` or ``"pluginfile:attachment"``, then
  ``"pluginfile"``;
* ``"mathjax"`` (files under /lib/mathjax*), ``"static"`` (theme and other page resources),
  ``"login"``;
* everything: ``"*"``.

All fields may be changed while the server runs; reads and writes are guarded by a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

DownMode = Literal["refuse", "hang"]


@dataclass
class HttpFailure:
    status: int
    remaining: int
    body: str | None = None
    after: int = 0  # matching requests let through before the failures start


@dataclass
class FaultConfig:
    """Mutable fault settings (``FakeMoodle.faults``).

    Latency:
      ``latency``: seconds per target (async sleep, other requests are not blocked);
      ``report_latency``: shortcut for ``latency["report"]``.
    HTTP failures:
      ``fail_next(target, n, status=500, after=0)``: the next ``n`` matching requests (after
      ``after`` more) get that status with an HTML error page instead of being processed;
      ``lose_answer_next(target, n, status=504)``: the next ``n`` matching web service calls
      are processed, then answered with that status (a proxy that timed out while PHP went on).
    Availability:
      ``down(mode="refuse")`` stops the listener (connections refused), ``down(mode="hang")``
      accepts connections but never answers; ``up()`` restores service on the same port.
    Files:
      ``attachment_bad_hash``: report metadata carries a wrong SHA-1 ``contenthash``;
      ``attachment_oversize_bytes``: every attachment is served (and announced) with this size;
      ``max_upload_bytes``: Moodle's ``$CFG->maxbytes``; larger uploads get the per-file
      ``fileoversized`` error; ``upload_max_filesize``: PHP's limit, larger files give the
      top-level ``upload_error_ini_size`` error; ``post_max_size``: PHP drops the whole POST
      body (upload.php then misses ``token``: ``missingparam``).
    Report page:
      ``mathjax``: ``None``, ``"never_ready"`` (startup promise / Hub queue never finishes),
      ``"hang"`` (MathJax script requests never answered), ``"missing"`` (404);
      ``login_redirect``: pages include Moodle's AJAX failure snippet that sends the window to
      ``/login/index.php``.
    """

    latency: dict[str, float] = field(default_factory=dict)
    attachment_bad_hash: bool = False
    attachment_oversize_bytes: int | None = None
    max_upload_bytes: int | None = None
    upload_max_filesize: int | None = None
    post_max_size: int | None = None
    mathjax: str | None = None
    login_redirect: bool = False
    _failures: dict[str, list[HttpFailure]] = field(default_factory=dict, repr=False)
    _lost: dict[str, list[HttpFailure]] = field(default_factory=dict, repr=False)
    _down: DownMode | None = field(default=None, repr=False)
    _on_down: Callable[[DownMode | None], None] | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # -- latency ------------------------------------------------------------------------------

    @property
    def report_latency(self) -> float:
        return self.latency.get("report", 0.0)

    @report_latency.setter
    def report_latency(self, seconds: float) -> None:
        self.set_latency("report", seconds)

    def set_latency(self, target: str, seconds: float) -> None:
        with self._lock:
            if seconds:
                self.latency[target] = float(seconds)
            else:
                self.latency.pop(target, None)

    def latency_for(self, targets: Sequence[str]) -> float:
        with self._lock:
            return sum(self.latency.get(t, 0.0) for t in (*targets, "*"))

    # -- HTTP failures ------------------------------------------------------------------------

    def fail_next(
        self, target: str, n: int = 1, status: int = 500, body: str | None = None, after: int = 0
    ) -> None:
        """Answer the next ``n`` requests matching ``target`` with HTTP ``status`` (after letting
        ``after`` of them through: ``after=3`` fails the fourth upload of a chunked archive)."""
        with self._lock:
            self._failures.setdefault(target, []).append(HttpFailure(status, n, body, after))

    def failures_pending(self, target: str) -> int:
        """How many requests matching ``target`` ``fail_next`` has still to fail."""
        with self._lock:
            return sum(f.remaining for f in self._failures.get(target, []))

    def lose_answer_next(self, target: str, n: int = 1, status: int = 504) -> None:
        """Process the next ``n`` web service calls matching ``target``, then answer them with
        HTTP ``status`` instead of their result (the caller cannot know it worked)."""
        with self._lock:
            self._lost.setdefault(target, []).append(HttpFailure(status, n))

    def take_lost_answer(self, targets: Sequence[str]) -> HttpFailure | None:
        return self.take_failure(targets, self._lost)

    def take_failure(
        self, targets: Sequence[str], queues: dict[str, list[HttpFailure]] | None = None
    ) -> HttpFailure | None:
        queues = self._failures if queues is None else queues
        with self._lock:
            for target in (*targets, "*"):
                queue = queues.get(target)
                while queue:
                    failure = queue[0]
                    if failure.remaining <= 0:
                        queue.pop(0)
                        continue
                    if failure.after > 0:
                        failure.after -= 1
                        return None
                    failure.remaining -= 1
                    return failure
            return None

    def clear(self) -> None:
        """Back to no faults at all (and the server up)."""
        with self._lock:
            self.latency.clear()
            self._failures.clear()
            self._lost.clear()
            self.attachment_bad_hash = False
            self.attachment_oversize_bytes = None
            self.max_upload_bytes = None
            self.upload_max_filesize = None
            self.post_max_size = None
            self.mathjax = None
            self.login_redirect = False
        self.up()

    # -- availability -------------------------------------------------------------------------

    @property
    def is_down(self) -> DownMode | None:
        return self._down

    def down(self, mode: DownMode = "refuse") -> None:
        """Make the fake Moodle unreachable (``"refuse"``) or unresponsive (``"hang"``)."""
        with self._lock:
            self._down = mode
            callback = self._on_down
        if callback is not None:
            callback(mode)

    def up(self) -> None:
        with self._lock:
            was_down = self._down is not None
            self._down = None
            callback = self._on_down
        if callback is not None and was_down:
            callback(None)
