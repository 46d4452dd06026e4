"""Chromium's Fetch domain on a slot's own CDP session: requests paused, answered from Python.

Used instead of Playwright's routes, which turn Chromium's cache off for the whole context
while any route is installed (microsoft/playwright#7220): with them every attempt parsed
the theme's stylesheets, decoded its fonts and compiled MathJax again
(bench/interception_bench.py). Chromium's memory cache answers a repeated static resource
before it reaches the Fetch domain, so only what Chromium does not have is paused.

Only requests of the slot's page target (its main frame and same-process frames) are
paused; requests of out-of-process frames and workers go to the network as they are.

With proxy credentials (QUIZ_ARCHIVER_PROXY_SERVER_URL with user:password) the interceptor
answers the proxy's challenges itself, which Playwright would do only by pausing every
request with Chromium's cache turned off. A challenge reaches only a paused request, so then
every request is paused (those Chromium's memory cache answers never reach the network).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from playwright.async_api import CDPSession
from playwright.async_api import Error as PlaywrightError

from .errors import first_line
from .urls import loggable_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PausedRequest:
    request_id: str
    url: str
    method: str
    resource_type: str  # lower case, as Playwright names them: script, stylesheet, document...
    headers: dict[str, str]

    @property
    def is_navigation(self) -> bool:
        return self.resource_type == "document"

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> PausedRequest:
        request = event["request"]
        url = request["url"] + request.get("urlFragment", "")
        return cls(
            request_id=event["requestId"],
            url=url,
            method=request["method"],
            resource_type=str(event.get("resourceType", "Other")).lower(),
            headers=dict(request.get("headers", {})),
        )


Handler = Callable[[PausedRequest], Awaitable[None]]


def wildcard(text: str) -> str:
    """`text` as a literal in a Fetch URL pattern (where * and ? are wildcards)."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


class FetchInterceptor:
    """Pauses the requests that match the current patterns and hands each to `handler`.

    A request the handler leaves unanswered (it raised) is failed, so no page waits for it.
    Answers to requests that went away meanwhile (the page moved on) are dropped quietly.
    """

    def __init__(self, cdp: CDPSession, proxy_credentials: tuple[str, str] | None = None) -> None:
        self._cdp = cdp
        self._credentials = proxy_credentials
        self._challenged: set[str] = set()  # requests given the credentials once already
        self._handler: Handler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        cdp.on("Fetch.requestPaused", self._paused)
        if proxy_credentials is not None:
            cdp.on("Fetch.authRequired", self._auth_required)

    async def enable(self, patterns: Iterable[dict[str, str]], handler: Handler) -> None:
        self._handler = handler
        params: dict[str, Any] = {"patterns": list(patterns)}
        if self._credentials is not None:
            params = {"patterns": [{"urlPattern": "*", "requestStage": "Request"}],
                      "handleAuthRequests": True}  # fmt: skip
        await self._cdp.send("Fetch.enable", params)

    async def disable(self) -> None:
        self._handler = None
        await self._cdp.send("Fetch.disable")

    def _paused(self, event: dict[str, Any]) -> None:
        self._spawn(self._handle(PausedRequest.from_event(event), self._handler))

    def _auth_required(self, event: dict[str, Any]) -> None:
        self._spawn(self._answer_challenge(event))

    def _spawn(self, answer: Coroutine[Any, Any, None]) -> None:
        """Events come in synchronously; each answer runs as a task, kept until it ends."""
        task = asyncio.get_running_loop().create_task(answer)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_challenge(self, event: dict[str, Any]) -> None:
        """The proxy's credentials, once per request (refused twice: they are wrong); any
        other site's challenge is cancelled, as Chromium without a user would."""
        request_id = event["requestId"]
        is_proxy = event.get("authChallenge", {}).get("source") == "Proxy"
        if is_proxy and self._credentials is not None and request_id not in self._challenged:
            self._challenged.add(request_id)
            username, password = self._credentials
            answer = {"response": "ProvideCredentials", "username": username,
                      "password": password}  # fmt: skip
        else:
            self._challenged.discard(request_id)
            answer = {"response": "CancelAuth"}
        await self._send(
            "Fetch.continueWithAuth", {"requestId": request_id, "authChallengeResponse": answer}
        )

    async def _handle(self, request: PausedRequest, handler: Handler | None) -> None:
        try:
            if handler is None:
                await self.pass_on(request)
            else:
                await handler(request)
        except PlaywrightError as exc:  # the request or the session is gone
            logger.debug("%s not answered: %s", loggable_url(request.url), first_line(exc))
        except Exception:
            logger.exception("answering %s failed", loggable_url(request.url))
            await self.fail(request, "Failed")

    async def pass_on(self, request: PausedRequest) -> None:
        """Let the request go on to Chromium's cache and the network."""
        await self._send("Fetch.continueRequest", {"requestId": request.request_id})

    async def fulfill(
        self,
        request: PausedRequest,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> None:
        await self._send(
            "Fetch.fulfillRequest",
            {
                "requestId": request.request_id,
                "responseCode": status,
                "responseHeaders": [{"name": k, "value": v} for k, v in headers],
                "body": base64.b64encode(body).decode("ascii"),
            },
        )

    async def fail(self, request: PausedRequest, reason: str) -> None:
        """reason: one of CDP's Network.ErrorReason (Failed, Aborted, BlockedByClient, ...)."""
        await self._send(
            "Fetch.failRequest", {"requestId": request.request_id, "errorReason": reason}
        )

    async def _send(self, method: str, params: dict[str, Any]) -> None:
        try:
            await self._cdp.send(method, params)
        except PlaywrightError as exc:
            # "Invalid InterceptionId": the page left, or the request was cancelled.
            logger.debug("%s: %s", method, first_line(exc))
