"""DEBUG logging of what happens in a report page, counts for the RenderResult, and the
console kept for the diagnostics of a failed attempt (URLs without query strings)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import ConsoleMessage, Page, Request

from .urls import loggable_url, redact_urls

logger = logging.getLogger(__name__)

_MAX_TEXT = 500
_MAX_CONSOLE = 500  # lines kept per render


class PageListener:
    """Listens to one page's events through the handlers `_handlers` names; a page slot is
    reused across renders, so each render attaches its listeners and detaches them after."""

    def attach(self, page: Page) -> None:
        for event, handler in self._handlers():
            page.on(event, handler)  # type: ignore[call-overload]

    def detach(self, page: Page) -> None:
        for event, handler in self._handlers():
            page.remove_listener(event, handler)

    def _handlers(self) -> list[tuple[str, Any]]:
        raise NotImplementedError


@dataclass
class PageEvents(PageListener):
    label: str  # which attempt, for log lines from concurrent renders
    page_errors: int = 0
    failed_requests: int = 0
    crashed: bool = False
    console: list[str] = field(default_factory=list)

    def _handlers(self) -> list[tuple[str, Any]]:
        return [
            ("console", self._console),
            ("pageerror", self._page_error),
            ("crash", self._crash),
            ("requestfailed", self._request_failed),
        ]

    def _console(self, message: ConsoleMessage) -> None:
        text = _clip(message.text)
        self._keep(f"console.{message.type}: {text}")
        logger.debug("%s console.%s: %s", self.label, message.type, text)

    def _page_error(self, error: Exception) -> None:
        self.page_errors += 1
        text = _clip(str(error))
        self._keep(f"page error: {text}")
        logger.debug("%s page error: %s", self.label, text)

    def _keep(self, line: str) -> None:
        if len(self.console) < _MAX_CONSOLE:
            self.console.append(line)

    def _crash(self, _page: Page) -> None:
        self.crashed = True
        logger.debug("%s: the page crashed", self.label)  # RenderError says so too

    def _request_failed(self, request: Request) -> None:
        self.failed_requests += 1
        logger.debug(
            "%s request failed: %s %s (%s)",
            self.label,
            request.method,
            loggable_url(request.url),
            request.failure or "unknown error",
        )


def _clip(text: str) -> str:
    text = redact_urls(text)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
