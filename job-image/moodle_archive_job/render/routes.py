"""What one attempt's page gets for each request Chromium pauses (interceptor.py).

* The report HTML is answered on a fake URL of the Moodle site, so the page has Moodle's
  origin and RequireJS/AJAX run same-origin.
* Static resources (stylesheets, fonts, images, scripts, MathJax; not web service, AJAX,
  pluginfile or login URLs) come from the job's asset cache: fetched once per job by
  whichever page asks first, then answered from memory (asset_cache, cache_policy). The
  job's `fetcher` (asset_fetcher.py) sends the page's request as it is (its headers, less
  conditional ones), with its own cookie jar, which a page never sees; no response that
  sets a cookie is kept (cache_policy). A kept asset is answered with a Cache-Control for
  the time the asset cache keeps it, so Chromium's memory cache answers the slot's next
  attempts without pausing the request.
* With QUIZ_ARCHIVER_PREVENT_REDIRECT_TO_LOGIN: requests to login/*.php are aborted, and
  Moodle's own scripts lose their "redirect to the login page" snippet (the patched copy is
  what the cache keeps).
* Everything else goes on to Chromium's cache and the network as it is.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .asset_cache import AssetCache, CachedAsset
from .asset_fetcher import AssetFetcher, Fetched, FetchFailed
from .cache_policy import carries_secret, is_revisioned, lifetime
from .interceptor import FetchInterceptor, PausedRequest, wildcard
from .login_redirect import LOGIN_URL_PATTERN, patch_login_redirect
from .urls import loggable_url

logger = logging.getLogger(__name__)

# What the asset cache handles; media (ranges of large files), documents and the rest pass.
_KEPT_TYPES = frozenset({"script", "stylesheet", "font", "image", "fetch", "xhr"})
_PAUSED_TYPES = ("Script", "Stylesheet", "Font", "Image", "XHR", "Fetch")  # the same, CDP's names
_BASE_HREF = re.compile(r"""<base\s[^>]*?href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
# Request headers the fetcher does not pass on: a conditional request would be answered 304,
# which is nothing to keep or to answer a page with; the fetcher says which encodings it reads.
_NOT_FORWARDED = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range",
     "range", "accept-encoding"}
)  # fmt: skip
# Response headers replaced by the one Cache-Control the page gets.
_FRESHNESS = frozenset({"cache-control", "expires", "pragma", "age"})
_MAX_AGE_SEC = 365 * 24 * 3600


@dataclass
class RouteLog:
    label: str
    blocked_login_requests: list[str] = field(default_factory=list)
    patched_scripts: list[str] = field(default_factory=list)
    # Resources the fetcher could not fetch: loggable URL -> cause ("timed out after 30 s"),
    # for resources.py, which sees only Chromium's net::ERR_FAILED.
    fetch_failures: dict[str, str] = field(default_factory=dict)


def moodle_roots(base_url: str, html: str) -> list[str]:
    """Where Moodle's scripts come from: the task's base URL and the report's <base href>.

    They differ when Moodle is configured with an internal wwwroot for the worker: script
    URLs in the report keep the public wwwroot (protocol spec, section 12).
    """
    roots = [base_url.rstrip("/")]
    match = _BASE_HREF.search(html)
    if match and match.group(1).startswith(("http://", "https://")):
        roots.append(match.group(1).rstrip("/"))
    return list(dict.fromkeys(roots))


def moodle_script_pattern(roots: Iterable[str]) -> re.Pattern[str]:
    prefixes = "|".join(re.escape(root) for root in roots)
    # Static .js files and Moodle's script handlers (requirejs.php, javascript.php,
    # yui_combo.php); not a MathJax copy hosted on the site (megabytes, never the snippet).
    return re.compile(
        rf"^(?:{prefixes})/(?![^?#]*mathjax)[^?#]*"
        r"(?:\.js|requirejs\.php|javascript\.php|yui_combo\.php)(?:[/?#].*)?$",
        re.IGNORECASE,
    )


def interception_patterns(
    page_url: str, roots: Iterable[str], *, prevent_login_redirect: bool, assets: bool
) -> list[dict[str, str]]:
    """Chromium's Fetch patterns for one attempt: only these requests are paused."""
    stage = {"requestStage": "Request"}
    patterns = [{"urlPattern": wildcard(page_url), "resourceType": "Document", **stage}]
    if prevent_login_redirect:
        patterns.append({"urlPattern": "*/login/*", **stage})
    if assets:
        patterns += [{"urlPattern": "*", "resourceType": kind, **stage} for kind in _PAUSED_TYPES]
    elif prevent_login_redirect:  # only Moodle's own scripts, to patch
        patterns += [
            {"urlPattern": wildcard(root) + "/*", "resourceType": "Script", **stage}
            for root in roots
        ]
    return patterns



class AttemptRoutes:
    """Answers the requests of one attempt's page (the interceptor's handler)."""

    def __init__(
        self,
        interceptor: FetchInterceptor,
        *,
        page_url: str,
        html: str,
        roots: list[str],
        prevent_login_redirect: bool,
        assets: AssetCache | None,
        fetcher: AssetFetcher,
        fetch_timeout_sec: float,
        log: RouteLog,
    ) -> None:
        self.interceptor = interceptor
        self.page_url = page_url
        self.html = html.encode("utf-8")
        self.roots = roots
        self.prevent_login_redirect = prevent_login_redirect
        self.assets = assets
        self.fetcher = fetcher
        self.timeout_sec = fetch_timeout_sec
        self.log = log
        scripts = moodle_script_pattern(roots)
        self.patches: Callable[[str], bool] | None = (
            (lambda url: bool(scripts.match(url))) if prevent_login_redirect else None
        )

    def patterns(self) -> list[dict[str, str]]:
        return interception_patterns(
            self.page_url, self.roots,
            prevent_login_redirect=self.prevent_login_redirect, assets=self.assets is not None,
        )  # fmt: skip

    async def handle(self, request: PausedRequest) -> None:
        url = request.url
        if request.is_navigation and url == self.page_url:
            await self.interceptor.fulfill(request, 200, _REPORT_HEADERS, self.html)
        elif self.prevent_login_redirect and LOGIN_URL_PATTERN.match(url):
            await self._block_login(request)
        elif request.method != "GET" or request.is_navigation:
            await self.interceptor.pass_on(request)
        else:
            await self._resource(request)

    async def _block_login(self, request: PausedRequest) -> None:
        url = loggable_url(request.url)
        self.log.blocked_login_requests.append(url)
        logger.info("%s: blocked a request to the login page %s", self.log.label, url)
        # "BlockedByClient" on a navigation makes Chromium show its "page blocked" error page,
        # which would then be printed; "Aborted" leaves the report in place.
        reason = "Aborted" if request.is_navigation else "BlockedByClient"
        await self.interceptor.fail(request, reason)

    async def _resource(self, request: PausedRequest) -> None:
        """From the asset cache when kept, else fetched (once for all pages when it may be
        kept); Moodle's scripts with their login redirect taken out."""
        url = request.url
        patch = (
            self.patches is not None and request.resource_type == "script" and self.patches(url)
        )
        if (
            self.assets is None
            or request.resource_type not in _KEPT_TYPES
            or carries_secret(url, request.headers)
        ):
            if patch:
                await self._fetch_and_answer(request, patch)
            else:
                await self.interceptor.pass_on(request)
            return
        try:
            entry = await self.assets.fetch_once(url, lambda: self._fetch_to_keep(request, patch))
        except FetchFailed as failed:
            await self._fetch_failed(request, failed)
            return
        except _NotKept as not_kept:
            await self._answer(request, not_kept.fetched, not_kept.body, not_kept.patched)
            return
        if entry is None:  # someone else's fetch may not be kept or failed: our own
            await self._fetch_and_answer(request, patch)
            return
        if entry.patched:
            self.log.patched_scripts.append(loggable_url(url))
        await self.interceptor.fulfill(request, entry.status, kept_headers(entry), entry.body)

    async def _fetch(self, request: PausedRequest) -> Fetched:
        return await self.fetcher.get(
            request.url, forwarded_headers(request.headers), self.timeout_sec
        )

    async def _fetch_to_keep(self, request: PausedRequest, patch: bool) -> CachedAsset | None:
        assert self.assets is not None
        fetched = await self._fetch(request)
        patched = patch_login_redirect(fetched.body) if patch else None
        body = patched or fetched.body
        headers = fetched.header_dict()
        revisioned = fetched.url == request.url and is_revisioned(request.url, self.roots)
        seconds = lifetime(fetched.status, headers, revisioned=revisioned)
        expires = time.monotonic() + (seconds or 0)
        if seconds is None or not self.assets.would_keep(len(body), expires):
            raise _NotKept(fetched, body, patched is not None)
        return CachedAsset(
            status=fetched.status,
            headers=headers,
            body=body,
            patched=patched is not None,
            expires=expires,
        )

    async def _fetch_and_answer(self, request: PausedRequest, patch: bool) -> None:
        try:
            fetched = await self._fetch(request)
        except FetchFailed as failed:
            await self._fetch_failed(request, failed)
            return
        patched = patch_login_redirect(fetched.body) if patch else None
        await self._answer(request, fetched, patched or fetched.body, patched is not None)

    async def _answer(
        self, request: PausedRequest, fetched: Fetched, body: bytes, patched: bool
    ) -> None:
        """A response that is not kept, with its own headers: Chromium caches it, or not, as
        HTTP says."""
        if patched:
            url = loggable_url(request.url)
            self.log.patched_scripts.append(url)
            logger.debug("%s: removed the login redirect from %s", self.log.label, url)
        await self.interceptor.fulfill(request, fetched.status, fetched.headers, body)

    async def _fetch_failed(self, request: PausedRequest, failed: FetchFailed) -> None:
        url = loggable_url(request.url)
        self.log.fetch_failures[url] = failed.cause
        logger.debug("%s: could not fetch %s: %s", self.log.label, url, failed.cause)
        await self.interceptor.fail(request, "Failed")


_REPORT_HEADERS = (("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"))


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}


def kept_headers(entry: CachedAsset) -> list[tuple[str, str]]:
    """A kept asset's headers, with Chromium told to keep it as long as the asset cache does."""
    remaining = entry.expires - time.monotonic()
    seconds = _MAX_AGE_SEC if math.isinf(remaining) else max(0, min(int(remaining), _MAX_AGE_SEC))
    headers = [(k, v) for k, v in entry.headers.items() if k.lower() not in _FRESHNESS]
    headers.append(("Cache-Control", f"max-age={seconds}"))
    return headers


class _NotKept(Exception):
    """The response of a shared fetch that may not be kept: only its own request gets it."""

    def __init__(self, fetched: Fetched, body: bytes, patched: bool) -> None:
        super().__init__("not kept")
        self.fetched = fetched
        self.body = body
        self.patched = patched
