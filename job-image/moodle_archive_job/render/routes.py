"""Request routing of one attempt's browser context.

* The report HTML is answered on a fake URL of the Moodle site, so the page has Moodle's
  origin and RequireJS/AJAX run same-origin.
* Static resources (stylesheets, fonts, images, scripts, MathJax; not web service, AJAX,
  pluginfile or login URLs) go through the job's asset cache: fetched once per job by
  whichever page asks first, then answered from memory (asset_cache, cache_policy). With
  the job's `fetcher` (a Playwright request context that lives as long as the job), a kept
  body is answered from the driver's copy of the fetched response, not sent from Python.
  The fetcher sends the page's request as it is (its headers), with its own cookie jar,
  which a page never sees; no response that sets a cookie is kept (cache_policy).
* With QUIZ_ARCHIVER_PREVENT_REDIRECT_TO_LOGIN: requests to login/*.php are aborted, and
  Moodle's own scripts lose their "redirect to the login page" snippet (the patched copy is
  what the cache keeps).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from playwright.async_api import APIRequestContext, APIResponse, BrowserContext, Route
from playwright.async_api import Error as PlaywrightError

from .asset_cache import AssetCache, CachedAsset, stored_headers
from .cache_policy import ROUTED_URL, carries_secret, is_revisioned, lifetime
from .errors import first_line
from .login_redirect import LOGIN_URL_PATTERN, patch_login_redirect
from .resources import network_cause
from .urls import loggable_url

logger = logging.getLogger(__name__)

# What the asset cache handles; media (ranges of large files), documents and the rest pass.
_KEPT_TYPES = frozenset({"script", "stylesheet", "font", "image", "fetch", "xhr"})
_BASE_HREF = re.compile(r"""<base\s[^>]*?href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


@dataclass
class RouteLog:
    label: str
    blocked_login_requests: list[str] = field(default_factory=list)
    patched_scripts: list[str] = field(default_factory=list)
    # Resources the route could not fetch: loggable URL -> cause ("timed out after 30 s"),
    # for resources.py, which sees only Chromium's net::ERR_FAILED.
    fetch_failures: dict[str, str] = field(default_factory=dict)


def _closing_is_fine(
    handler: Callable[[Route], Awaitable[None]],
) -> Callable[[Route], Awaitable[None]]:
    """A route answered while its context closes (render failed or finished) is no error."""

    async def wrapped(route: Route) -> None:
        try:
            await handler(route)
        except PlaywrightError as exc:
            logger.debug(
                "route of %s not answered: %s", loggable_url(route.request.url), first_line(exc)
            )

    return wrapped


def _fetch_cause(exc: PlaywrightError, timeout_sec: float) -> str:
    message = first_line(exc)
    if "timeout" in message.lower() or "timed out" in message.lower():
        return f"timed out after {timeout_sec:g} s"
    return f"failed ({network_cause(message)})"


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


async def install_routes(
    context: BrowserContext,
    *,
    page_url: str,
    html: str,
    roots: list[str],
    prevent_login_redirect: bool,
    assets: AssetCache | None,
    fetch_timeout_sec: float,
    log: RouteLog,
    fetcher: APIRequestContext | None = None,
) -> None:
    """Route the report page, static resources through the job's asset cache (None: off),
    and (with prevent_login_redirect) login requests and Moodle's scripts."""

    async def answer_report(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

    async def block_login(route: Route) -> None:
        request = route.request
        url = loggable_url(request.url)
        log.blocked_login_requests.append(url)
        logger.info("%s: blocked a request to the login page %s", log.label, url)
        # "blockedbyclient" on a navigation makes Chromium show its "page blocked" error page,
        # which would then be printed; "aborted" leaves the report in place.
        await route.abort("aborted" if request.is_navigation_request() else "blockedbyclient")

    scripts = moodle_script_pattern(roots)
    resources = _ResourceRoute(
        roots, assets, fetch_timeout_sec, log, fetcher,
        patches=(lambda url: bool(scripts.match(url))) if prevent_login_redirect else None,
    )  # fmt: skip
    if assets is not None:
        await context.route(ROUTED_URL, _closing_is_fine(resources.handle))
    elif prevent_login_redirect:
        await context.route(scripts, _closing_is_fine(resources.handle))
    if prevent_login_redirect:
        await context.route(LOGIN_URL_PATTERN, _closing_is_fine(block_login))
    page_pattern = re.compile("^" + re.escape(page_url) + "$")
    await context.route(page_pattern, _closing_is_fine(answer_report))


class _ResourceRoute:
    """Subresources: from the asset cache when kept, else fetched (once for all pages when
    they may be kept); Moodle's scripts with their login redirect taken out (`patches`)."""

    def __init__(
        self,
        roots: list[str],
        assets: AssetCache | None,
        fetch_timeout_sec: float,
        log: RouteLog,
        fetcher: APIRequestContext | None,
        patches: Callable[[str], bool] | None,
    ) -> None:
        self.roots = roots
        self.assets = assets
        self.fetcher = fetcher
        self.timeout_ms = fetch_timeout_sec * 1000
        self.log = log
        self.patches = patches

    async def handle(self, route: Route) -> None:
        request = route.request
        url = request.url
        if request.method != "GET" or request.is_navigation_request():
            await route.fallback()
            return
        patch = (
            self.patches is not None and request.resource_type == "script" and self.patches(url)
        )
        if (
            self.assets is None
            or request.resource_type not in _KEPT_TYPES
            or carries_secret(url, request.headers)
        ):
            if patch:
                await self._fetch_and_answer(route, patch)
            else:
                await route.fallback()
            return
        try:
            entry = await self.assets.fetch_once(url, lambda: self._fetch_to_keep(route, patch))
        except PlaywrightError as exc:
            await self._fetch_failed(route, exc)
            return
        except _NotKept as kept_not:
            try:
                await self._answer(route, kept_not.response, kept_not.body, kept_not.patched)
            finally:
                if self.fetcher is not None:  # the job's fetcher would keep it until the end
                    await kept_not.response.dispose()
            return
        if entry is None:  # someone else's fetch may not be kept or failed: our own
            await self._fetch_and_answer(route, patch)
            return
        if entry.patched:
            self.log.patched_scripts.append(loggable_url(url))
        if entry.held is not None:  # the body from the driver's copy
            await route.fulfill(response=entry.held, status=entry.status, headers=entry.headers)
        else:
            await route.fulfill(status=entry.status, headers=entry.headers, body=entry.body)

    async def _fetch_to_keep(self, route: Route, patch: bool) -> CachedAsset | None:
        assert self.assets is not None
        if self.fetcher is not None:  # the same request, from a context that outlives pages
            response = await self.fetcher.fetch(route.request, timeout=self.timeout_ms)
        else:
            response = await route.fetch(timeout=self.timeout_ms)
        body = await response.body()
        patched = patch_login_redirect(body) if patch else None
        revisioned = response.url == route.request.url and is_revisioned(
            route.request.url, self.roots
        )
        seconds = lifetime(response.status, response.headers, revisioned=revisioned)
        expires = time.monotonic() + (seconds or 0)
        if seconds is None or not self.assets.would_keep(len(patched or body), expires):
            raise _NotKept(response, patched or body, patched is not None)
        held = response if self.fetcher is not None and patched is None else None
        if self.fetcher is not None and held is None:
            await response.dispose()  # a patched body is sent from Python
        return CachedAsset(
            status=response.status,
            headers=stored_headers(response.headers),
            body=patched or body,
            patched=patched is not None,
            expires=expires,
            held=held,
        )

    async def _fetch_and_answer(self, route: Route, patch: bool) -> None:
        try:
            response = await route.fetch(timeout=self.timeout_ms)
            body = await response.body()
        except PlaywrightError as exc:
            await self._fetch_failed(route, exc)
            return
        patched = patch_login_redirect(body) if patch else None
        await self._answer(route, response, patched or body, patched is not None)

    async def _answer(
        self, route: Route, response: APIResponse, body: bytes, patched: bool
    ) -> None:
        if patched:
            url = loggable_url(route.request.url)
            self.log.patched_scripts.append(url)
            logger.debug("%s: removed the login redirect from %s", self.log.label, url)
        await route.fulfill(response=response, body=body)

    async def _fetch_failed(self, route: Route, exc: PlaywrightError) -> None:
        url = loggable_url(route.request.url)
        self.log.fetch_failures[url] = _fetch_cause(exc, self.timeout_ms / 1000)
        logger.debug("%s: could not fetch %s: %s", self.log.label, url, first_line(exc))
        await route.abort("failed")


class _NotKept(Exception):
    """The response of a shared fetch that may not be kept: only its own request gets it."""

    def __init__(self, response: APIResponse, body: bytes, patched: bool) -> None:
        super().__init__("not kept")
        self.response = response
        self.body = body
        self.patched = patched
