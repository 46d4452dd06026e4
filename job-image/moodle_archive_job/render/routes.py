"""Request routing of one attempt's browser context.

* The report HTML is answered on a fake URL of the Moodle site, so the page has Moodle's
  origin and RequireJS/AJAX run same-origin.
* With QUIZ_ARCHIVER_PREVENT_REDIRECT_TO_LOGIN: requests to login/*.php are aborted, and
  Moodle's own scripts lose their "redirect to the login page" snippet. Only scripts from the
  Moodle site go through Python, a script without the snippet is passed on as fetched, and
  cacheable ones are fetched once per job (script_cache).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from playwright.async_api import BrowserContext, Route
from playwright.async_api import Error as PlaywrightError

from .errors import first_line
from .login_redirect import LOGIN_URL_PATTERN, patch_login_redirect
from .script_cache import ScriptCache
from .urls import loggable_url

logger = logging.getLogger(__name__)

_BASE_HREF = re.compile(r"""<base\s[^>]*?href\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


@dataclass
class RouteLog:
    label: str
    blocked_login_requests: list[str] = field(default_factory=list)
    patched_scripts: list[str] = field(default_factory=list)


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
    script_roots: list[str] | None,
    scripts: ScriptCache,
    fetch_timeout_sec: float,
    log: RouteLog,
) -> None:
    """Route the report page; block login redirects unless script_roots is None."""

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

    async def patch_script(route: Route) -> None:
        request = route.request
        if request.resource_type != "script" or request.method != "GET":
            await route.fallback()
            return
        cached = scripts.get(request.url)
        if cached is not None:
            if cached.patched:
                log.patched_scripts.append(loggable_url(request.url))
            await route.fulfill(status=cached.status, headers=cached.headers, body=cached.body)
            return
        try:
            response = await route.fetch(timeout=fetch_timeout_sec * 1000)
            body = await response.body()
        except PlaywrightError as exc:
            logger.debug(
                "%s: could not fetch script %s: %s",
                log.label,
                loggable_url(request.url),
                first_line(exc),
            )
            await route.abort("failed")
            return
        patched = patch_login_redirect(body)
        scripts.put(request.url, response.status, response.headers, patched or body, bool(patched))
        if patched is None:
            await route.fulfill(response=response)
            return
        url = loggable_url(request.url)
        log.patched_scripts.append(url)
        logger.debug("%s: removed the login redirect from %s", log.label, url)
        await route.fulfill(response=response, body=patched)

    if script_roots is not None:
        await context.route(LOGIN_URL_PATTERN, _closing_is_fine(block_login))
        await context.route(moodle_script_pattern(script_roots), _closing_is_fine(patch_script))
    page_pattern = re.compile("^" + re.escape(page_url) + "$")
    await context.route(page_pattern, _closing_is_fine(answer_report))
