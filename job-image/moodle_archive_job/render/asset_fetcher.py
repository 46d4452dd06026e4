"""The job's own HTTP client for the assets the asset cache keeps and the scripts it patches.

`requests` with the runner's proxy and TLS settings, like the Moodle client: through an HTTP
proxy an `http://` URL is asked for as an absolute URI and only `https://` goes through a
CONNECT tunnel. (Playwright's request context tunnels every request, which proxies such as
Squid refuse for port 80 by default.) Each worker thread has a session, and so a cookie jar,
of its own, which no page sees. Blocking calls run in those threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from moodle_archive_job.http_session import ExplicitVerifySession
from moodle_archive_job.moodle_client import transport_cause
from moodle_archive_job.requests_proxies import bypasses_proxy, requests_proxies
from moodle_archive_job.settings import RunnerSettings

_THREADS = 8  # fetches at once (Chromium itself allows 6 connections per host)
_NO_PROXY = {"http": None, "https": None}


@dataclass(frozen=True)
class Fetched:
    status: int
    url: str  # after redirects
    headers: list[tuple[str, str]]  # as sent, repeated names repeated
    body: bytes  # decoded (no Content-Encoding left)

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
        self._verify = not settings.skip_https_cert_validation
        self._proxies = requests_proxies(settings)
        self._bypass = settings.proxy_bypass_domains if self._proxies else None
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="asset-fetch")

    async def get(self, url: str, headers: Mapping[str, str], timeout_sec: float) -> Fetched:
        """The answer, whatever its status; FetchFailed when there is none."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self._get, url, dict(headers), timeout_sec)
        try:
            return await asyncio.wait_for(work, timeout_sec)
        except TimeoutError:
            raise FetchFailed(f"timed out after {timeout_sec:g} s") from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = ExplicitVerifySession()
            session.verify = self._verify
            if self._proxies is not None:
                session.trust_env = False
                session.proxies.update(self._proxies)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _get(self, url: str, headers: dict[str, str], timeout_sec: float) -> Fetched:
        proxies = _NO_PROXY if bypasses_proxy(url, self._bypass) else None
        try:
            with self._session().get(
                url, headers=headers, timeout=timeout_sec, proxies=proxies  # type: ignore[arg-type]
            ) as response:
                return Fetched(
                    response.status_code, response.url, list(response.raw.headers.items()),
                    response.content,
                )  # fmt: skip
        except requests.Timeout:
            raise FetchFailed(f"timed out after {timeout_sec:g} s") from None
        except requests.exceptions.ProxyError:
            raise FetchFailed("failed (proxy refused or unreachable)") from None
        except requests.RequestException as exc:
            raise FetchFailed(f"failed ({transport_cause(exc)})") from None
