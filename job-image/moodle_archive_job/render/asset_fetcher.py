"""The job's own HTTP client for the assets the asset cache keeps and the scripts it patches.

`requests` with the runner's proxy and TLS settings, like the Moodle client: through an HTTP
proxy an `http://` URL is asked for as an absolute URI and only `https://` goes through a
CONNECT tunnel. (Playwright's request context tunnels every request, which proxies such as
Squid refuse for port 80 by default.) One session for the job, with a cookie jar that no page
sees; each fetch runs in a thread of its own, at most 8 at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from moodle_archive_job.http_session import ExplicitVerifySession, configure
from moodle_archive_job.moodle_client import transport_cause
from moodle_archive_job.requests_proxies import bypasses_proxy, requests_proxies
from moodle_archive_job.settings import RunnerSettings

_AT_ONCE = 8  # fetches (Chromium itself allows 6 connections per host)
_NO_PROXY = {"http": None, "https": None}
# The body is handed on decoded; these would describe the encoded one.
_BODY_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})
T = TypeVar("T")


@dataclass(frozen=True)
class Fetched:
    status: int
    url: str  # after redirects
    headers: list[tuple[str, str]]  # as sent, repeated names repeated, less _BODY_HEADERS
    body: bytes  # decoded

    def header_dict(self) -> dict[str, str]:
        """Lower-case names; repeated headers joined (Set-Cookie by newlines)."""
        merged: dict[str, str] = {}
        for name, value in self.headers:
            key = name.lower()
            joint = "\n" if key == "set-cookie" else ", "
            merged[key] = f"{merged[key]}{joint}{value}" if key in merged else value
        return merged


class FetchFailed(Exception):
    """`cause`: a few words for the page's problem line ("timed out after 30 s")."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class AssetFetcher:
    def __init__(self, settings: RunnerSettings) -> None:
        proxies = requests_proxies(settings)
        self._session = configure(
            ExplicitVerifySession(), verify=not settings.skip_https_cert_validation,
            proxies=proxies,
        )  # fmt: skip
        self._bypass = settings.proxy_bypass_domains if proxies else None
        self._at_once = asyncio.Semaphore(_AT_ONCE)

    async def get(self, url: str, headers: Mapping[str, str], timeout_sec: float) -> Fetched:
        """The answer, whatever its status; FetchFailed when there is none in time."""
        async with self._at_once:
            work = _in_daemon_thread(self._get, url, dict(headers), timeout_sec)
            try:
                return await asyncio.wait_for(work, timeout_sec)
            except TimeoutError:
                raise _timed_out(timeout_sec) from None

    def close(self) -> None:
        self._session.close()

    def _get(self, url: str, headers: dict[str, str], timeout_sec: float) -> Fetched:
        proxies = _NO_PROXY if bypasses_proxy(url, self._bypass) else None
        try:
            with self._session.get(
                url, headers=headers, timeout=timeout_sec, proxies=proxies  # type: ignore[arg-type]
            ) as response:
                headers = [(k, v) for k, v in response.raw.headers.items()
                           if k.lower() not in _BODY_HEADERS]  # fmt: skip
                return Fetched(response.status_code, response.url, headers, response.content)
        except requests.Timeout:
            raise _timed_out(timeout_sec) from None
        except requests.exceptions.ProxyError:
            raise FetchFailed("failed (proxy refused or unreachable)") from None
        except requests.RequestException as exc:
            raise FetchFailed(f"failed ({transport_cause(exc)})") from None


def _timed_out(timeout_sec: float) -> FetchFailed:
    return FetchFailed(f"timed out after {timeout_sec:g} s")


async def _in_daemon_thread(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)` in a thread of its own that never holds up the process's exit (an
    executor's threads are joined at exit, and a fetch may hang for its whole timeout)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # given up on (timed out, cancelled)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = call(*args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="asset-fetch", daemon=True).start()
    return await future
