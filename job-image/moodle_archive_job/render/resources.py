"""Every subresource a report page asks for, and which of them failed to arrive.

Stylesheets, fonts and scripts shape the printed page: one that failed (connection refused,
reset, a 5xx answer, the script fetch of routes.py failing) or that has not arrived by the
time the page would be printed makes the page incomplete, and the renderer renders it again
or fails the attempt with the cause (`Problem.line`). A 4xx answer is Moodle's definitive
answer, not a transient failure: it is noted (log, diagnostics) but neither retried nor
fatal. Images are noted only: Moodle inlines every image of the report as a data URI (spec
6.1), so the ones a page still loads are theme decoration (icons, backgrounds). XHR/fetch
are Moodle's AJAX calls, which fail without a session by design. Requests the renderer
aborted itself (the login page) and ones the page cancelled (net::ERR_ABORTED) are not
failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Request, Response

from moodle_archive_job.logs import redact

from .pagelog import PageListener
from .urls import loggable_url, redact_urls

logger = logging.getLogger(__name__)

SHAPING = frozenset({"stylesheet", "font", "script"})
NOTED = SHAPING | {"image", "media"}
_TRANSIENT_STATUS = frozenset({408, 425, 429})
_IGNORED_FAILURES = ("net::ERR_ABORTED", "net::ERR_BLOCKED_BY_CLIENT")
_POLL_SEC = 0.05
_MAX_LOGGED = 500  # requests kept for the diagnostics, per render


@dataclass(frozen=True)
class Problem:
    kind: str  # Playwright's resource type: stylesheet, font, script, image, media
    url: str  # loggable: no query string
    cause: str  # "timed out after 30 s", "failed (net::ERR_CONNECTION_REFUSED)", ...
    transient: bool = True

    @property
    def shapes_page(self) -> bool:
        return self.kind in SHAPING and self.transient

    def line(self) -> str:
        return f"{self.kind} {self.url} {self.cause}"


@dataclass
class _Entry:
    method: str
    kind: str
    url: str  # tokens redacted, query kept
    started: float
    ended: float | None = None
    status: int | None = None
    failure: str | None = None

    def as_dict(self, origin: float) -> dict[str, Any]:
        return {
            "method": self.method,
            "type": self.kind,
            "url": self.url,
            "status": self.status,
            "failure": self.failure,
            "started_ms": round((self.started - origin) * 1000),
            "duration_ms": None
            if self.ended is None
            else round((self.ended - self.started) * 1000),
        }


@dataclass
class ResourceTracker(PageListener):
    """Listens to one page for one render; `problems` answers what went wrong."""

    page_url: str
    # Causes the script route knows better than Chromium (URL without query -> cause).
    fetch_failures: Mapping[str, str] = field(default_factory=dict)
    ignored_urls: Callable[[], list[str]] = list
    clock: Callable[[], float] = time.monotonic
    _pending: dict[Request, _Entry] = field(default_factory=dict)
    _entries: list[_Entry] = field(default_factory=list)
    _problems: list[Problem] = field(default_factory=list)
    _origin: float = 0.0

    def __post_init__(self) -> None:
        self._origin = self.clock()

    def _handlers(self) -> list[tuple[str, Any]]:
        return [
            ("request", self._request),
            ("response", self._response),
            ("requestfinished", self._finished),
            ("requestfailed", self._failed),
        ]

    # --- events --------------------------------------------------------------------------------

    def _request(self, request: Request) -> None:
        if request.url.startswith(("data:", "blob:")) or request.url == self.page_url:
            return
        entry = _Entry(request.method, request.resource_type, redact(request.url), self.clock())
        self._pending[request] = entry
        if len(self._entries) < _MAX_LOGGED:
            self._entries.append(entry)

    def _response(self, response: Response) -> None:
        entry = self._pending.get(response.request)
        if entry is None:
            return
        entry.status = response.status
        if response.status >= 400 and entry.kind in NOTED:
            transient = response.status >= 500 or response.status in _TRANSIENT_STATUS
            self._note(
                Problem(entry.kind, loggable_url(response.url),
                        f"answered HTTP {response.status}", transient)
            )  # fmt: skip

    def _finished(self, request: Request) -> None:
        entry = self._pending.pop(request, None)
        if entry is not None:
            entry.ended = self.clock()

    def _failed(self, request: Request) -> None:
        entry = self._pending.pop(request, None)
        if entry is None:
            return
        entry.ended = self.clock()
        failure = request.failure or "unknown error"
        entry.failure = failure
        url = loggable_url(request.url)
        if entry.kind not in NOTED or failure.startswith(_IGNORED_FAILURES):
            return
        if url in self.ignored_urls():
            return
        known = self.fetch_failures.get(url)
        self._note(Problem(entry.kind, url, known or f"failed ({network_cause(failure)})"))

    def _note(self, problem: Problem) -> None:
        if problem in self._problems:
            return
        self._problems.append(problem)
        logger.debug("resource problem: %s", problem.line())

    # --- questions -----------------------------------------------------------------------------

    def pending_shaping(self) -> list[_Entry]:
        return [e for e in self._pending.values() if e.kind in SHAPING]

    async def settle(self, timeout_sec: float) -> None:
        """Wait until no stylesheet, font or script is still loading, or until each that is
        has been loading for `timeout_sec`."""
        while True:
            now = self.clock()
            waiting = [e for e in self.pending_shaping() if now - e.started < timeout_sec]
            if not waiting:
                return
            oldest = min(e.started for e in waiting)
            await asyncio.sleep(min(_POLL_SEC, timeout_sec - (now - oldest)))

    def arrived_after(self, moment: float) -> list[Problem]:
        """Stylesheets, fonts and scripts that loaded fine, but only after `moment`."""
        return [
            Problem(e.kind, loggable_url(e.url), f"arrived only after {e.ended - e.started:.1f} s")
            for e in self._entries
            if e.kind in SHAPING and e.ended is not None and e.ended > moment
            and e.failure is None and (e.status is None or e.status < 400)
        ]

    def problems(self, older_than: float | None = None, said: float | None = None) -> list[Problem]:
        """What failed so far; with `older_than`, shaping requests still loading for that many
        seconds count as timed out (after `said` seconds, if given: the limit that ran out)."""
        found = list(self._problems)
        if older_than is not None:
            now = self.clock()
            for entry in self.pending_shaping():
                if now - entry.started >= older_than:
                    limit = older_than if said is None else said
                    found.append(
                        Problem(entry.kind, loggable_url(entry.url), f"timed out after {limit:g} s")
                    )
        return found

    def requested_urls(self) -> list[str]:
        return [entry.url for entry in self._entries]

    def requests(self) -> list[dict[str, Any]]:
        """Every request of the render (tokens redacted), for the diagnostics."""
        return [entry.as_dict(self._origin) for entry in self._entries]


# Chromium's net errors and Playwright's fetch errors (Node's), in one vocabulary.
_NETWORK_CAUSES = (
    (("ERR_CONNECTION_REFUSED", "ECONNREFUSED"), "connection refused"),
    (("ERR_NAME_NOT_RESOLVED", "ENOTFOUND", "EAI_AGAIN"), "host name not resolved"),
    (("ERR_CONNECTION_RESET", "ECONNRESET"), "connection reset"),
    (("ERR_CONNECTION_TIMED_OUT", "ERR_TIMED_OUT", "ETIMEDOUT"), "connection timed out"),
    (("ERR_EMPTY_RESPONSE", "socket hang up"), "connection closed without an answer"),
    (("ERR_CERT_", "certificate", "SSL", "TLS"), "TLS certificate not trusted"),
    (("ERR_UNSAFE_PORT",), "port blocked by Chromium"),
    (("ERR_PROXY", "ERR_TUNNEL"), "proxy error"),
)


def network_cause(text: str) -> str:
    """A few words for why a request failed (query strings dropped)."""
    for needles, cause in _NETWORK_CAUSES:
        if any(needle in text for needle in needles):
            return cause
    return redact_urls(text.removeprefix("Route.fetch: "))


def blocking(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.shapes_page]
