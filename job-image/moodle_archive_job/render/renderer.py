"""One Chromium per job; attempt reports rendered in reused, wiped browser contexts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

from moodle_archive_job.atomic_file import write_bytes_atomically
from moodle_archive_job.settings import RunnerSettings
from moodle_archive_job.task import PaperFormat

from .asset_cache import AssetCache
from .asset_fetcher import AssetFetcher
from .chromium import launch_args, proxy_settings, without_credentials
from .diagnostics import write_diagnostics
from .errors import IncompletePage, ReadinessTimeout, RenderError, first_line
from .executable import chromium_executable
from .pagelog import PageEvents
from .paper import paper_size_css
from .readiness import ProbeConfig, ProbeReport, probe_snapshot, wait_until_ready
from .resources import ResourceTracker, blocking
from .result import ReadyState, RenderResult
from .routes import AttemptRoutes, RouteLog, moodle_roots
from .slots import DEFAULT_MAX_USES, PageSlot, SlotPool
from .urls import loggable_url

logger = logging.getLogger(__name__)

DEFAULT_STALL_GRACE_SEC = 10.0
# Readiness markers of a probe that gave up waiting for something still loading.
_GAVE_UP_MARKERS = ("mathjax-not-found", "page-load-incomplete")
_PRINT_TIMEOUT_SEC = 120.0
_DEMO_SCRIPT = resources.files(__package__).joinpath("demo.js").read_text("utf-8")


class Renderer:
    """Turns Moodle attempt reports into PDFs with one headless Chromium.

    `render_pdf` may run concurrently from several tasks. Isolation model: each call has a
    browser context with one page to itself for the time of the call (a slot, see slots.py);
    concurrent calls never share one. Slots are reused by later calls, which saves a new
    renderer process per attempt, and wiped after each attempt: the page leaves the report,
    the request interception ends (it is set up per attempt, for the attempt's own unique
    URL), and its sessionStorage, window.name, the cookies and every storage of the origins
    it showed are cleared. A slot whose attempt failed is closed, not reused; so is one after
    `max_uses` attempts. Kept across attempts: static resources that HTTP or Moodle's
    revisioned URLs let a cache keep (`assets`, shared by all slots, see cache_policy),
    Chromium's own HTTP and memory caches of a slot (unless `assets` is off) and the V8
    code compiled in a slot's renderer process.
    """

    def __init__(
        self,
        settings: RunnerSettings,
        *,
        stall_grace_sec: float = DEFAULT_STALL_GRACE_SEC,
        extra_browser_args: Sequence[str] = (),
        max_uses: int = DEFAULT_MAX_USES,
        on_phase: Callable[[str], None] | None = None,
    ) -> None:
        """on_phase: called with "setup", "navigate", "ready", "print" as each ends (profiling)."""
        self._settings = settings
        self._on_phase = on_phase
        self._extra_args = tuple(extra_browser_args)
        self._probe = ProbeConfig(
            prevent_login_redirect=settings.prevent_redirect_to_login,
            stall_grace_sec=min(stall_grace_sec, settings.wait_for_ready_signal_timeout_sec),
        ).script()
        cache_bytes = settings.asset_cache_mib * 1024 * 1024
        self.assets = AssetCache(cache_bytes) if cache_bytes > 0 else None
        # Fetches the assets to keep and the scripts to patch (routes.py).
        self._fetcher = AssetFetcher(settings)
        # Scripts patched so far: a slot's later pages get them from Chromium's memory cache.
        self._patched_scripts: set[str] = set()
        # Playwright gets the proxy without its credentials: interceptor.py answers for them.
        self._proxy, credentials = without_credentials(proxy_settings(settings))
        self._slots = SlotPool(
            self._new_context, self._probe, max_uses,
            keep_http_cache=self.assets is not None, proxy_credentials=credentials,
        )  # fmt: skip
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._numbers = itertools.count(1)

    async def __aenter__(self) -> Renderer:
        executable = chromium_executable(self._settings)
        self._playwright = await async_playwright().start()
        try:
            self._browser = await self._playwright.chromium.launch(
                executable_path=executable,
                args=launch_args(self._extra_args),
                proxy=self._proxy,  # type: ignore[arg-type]
                headless=True,
            )
        except PlaywrightError as exc:
            await self._playwright.stop()
            self._playwright = None
            raise RenderError(f"Chromium ({executable}) did not start: {first_line(exc)}") from None
        logger.info("Chromium %s started (%s)", self._browser.version, executable)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fetcher.close()
        if self._browser is not None:
            try:
                await self._browser.close()
            except PlaywrightError as error:
                logger.debug("closing Chromium: %s", first_line(error))
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None

    async def render_pdf(
        self,
        html: str,
        base_url: str,
        pdf_path: Path,
        paper_format: PaperFormat,
        diagnostics: Path | None = None,
    ) -> RenderResult:
        """Print the report `html`, served as if from `base_url`, to `pdf_path` (atomically).

        A page whose stylesheet, font or script failed to load is rendered again (up to
        QUIZ_ARCHIVER_RENDER_ATTEMPTS times, with backoff); then IncompletePage, unless
        QUIZ_ARCHIVER_ALLOW_INCOMPLETE_PAGES prints the last try anyway. Raises RenderError,
        or its subclass ReadinessTimeout when the page was not ready in time and
        QUIZ_ARCHIVER_CONTINUE_AFTER_READY_SIGNAL_TIMEOUT is off. When it raises and
        `diagnostics` is given, that folder receives the diagnostics (diagnostics.py).
        """
        if self._browser is None or not self._browser.is_connected():
            raise RenderError("the browser is not running")
        # The pipeline's folder (attempt-<id>) tells concurrent renders apart in the log.
        label = f"render#{next(self._numbers)} {pdf_path.parent.name}"
        tries = self._settings.render_attempts
        delay = self._settings.render_retry_backoff_sec
        for number in range(1, tries + 1):
            final = number == tries
            try:
                return await self._render_once(
                    html, base_url, pdf_path, paper_format, label, final, diagnostics
                )
            except IncompletePage as exc:
                if final:
                    raise
                logger.warning(
                    "%s: %s; rendering again in %g s (try %d of %d)",
                    label, exc, delay, number + 1, tries,
                )  # fmt: skip
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def _render_once(
        self,
        html: str,
        base_url: str,
        pdf_path: Path,
        paper_format: PaperFormat,
        label: str,
        final: bool,
        diagnostics: Path | None,
    ) -> RenderResult:
        started = time.monotonic()
        try:
            slot = await self._slots.take()
        except PlaywrightError as exc:
            raise RenderError(f"{label}: could not open a page: {first_line(exc)}") from None
        print_incomplete = final and self._settings.allow_incomplete_pages
        attempt = _AttemptRender(
            self._settings, slot, label, started, self.assets, self._on_phase, self._fetcher,
            self._patched_scripts,
        )  # fmt: skip
        try:
            result = await attempt.run(html, base_url, pdf_path, paper_format, print_incomplete)
        except (RenderError, PlaywrightError) as exc:
            error = attempt.explain(
                exc if isinstance(exc, RenderError) else RenderError(f"{label}: {first_line(exc)}")
            )
            if diagnostics is not None and (final or not isinstance(error, IncompletePage)):
                await attempt.diagnose(diagnostics, html, error)
            await slot.close(label)
            raise error from None
        except BaseException:
            await slot.close(label)
            raise
        attempt.detach()
        await self._slots.give_back(slot, label)
        return result

    async def _new_context(self) -> BrowserContext:
        assert self._browser is not None
        width = self._settings.report_base_viewport_width
        options: dict[str, Any] = {
            "viewport": {"width": width, "height": round(width / (16 / 9))},
            "ignore_https_errors": self._settings.skip_https_cert_validation,
            "service_workers": "block",
            "accept_downloads": False,
        }
        if self._proxy is not None:
            options["proxy"] = self._proxy
        try:
            context = await self._browser.new_context(**options)
        except PlaywrightError as exc:
            raise RenderError(f"could not open a browser context: {first_line(exc)}") from None
        context.set_default_navigation_timeout(
            self._settings.wait_for_navigation_timeout_sec * 1000
        )
        return context


class _AttemptRender:
    def __init__(
        self,
        settings: RunnerSettings,
        slot: PageSlot,
        label: str,
        started: float,
        assets: AssetCache | None,
        on_phase: Callable[[str], None] | None,
        fetcher: AssetFetcher,
        patched_scripts: set[str],
    ) -> None:
        self.assets = assets
        self.fetcher = fetcher
        self.patched_scripts = patched_scripts
        self.on_phase = on_phase
        self.settings = settings
        self.slot = slot
        self.label = label
        self.started = started
        self.routes = RouteLog(label)
        self.events = PageEvents(label)
        self.resources = ResourceTracker(
            "", self.routes.fetch_failures, lambda: self.routes.blocked_login_requests
        )
        self.timings: dict[str, float] = {}
        self.page_url = ""

    async def run(
        self,
        html: str,
        base_url: str,
        pdf_path: Path,
        paper_format: PaperFormat,
        print_incomplete: bool = False,
    ) -> RenderResult:
        settings = self.settings
        base = base_url.rstrip("/")
        # Unique per call: concurrent attempts never answer each other's page.
        self.page_url = page_url = f"{base}/mock/attempt/{secrets.token_hex(8)}"
        self.resources.page_url = page_url
        routes = AttemptRoutes(
            self.slot.interceptor,
            page_url=page_url,
            html=html,
            roots=moodle_roots(base, html),
            prevent_login_redirect=settings.prevent_redirect_to_login,
            assets=self.assets,
            fetcher=self.fetcher,
            fetch_timeout_sec=settings.wait_for_navigation_timeout_sec,
            log=self.routes,
        )
        await self.slot.interceptor.enable(routes.patterns(), routes.handle)
        page = self.slot.page
        self.events.attach(page)
        self.resources.attach(page)
        self._phase_done("setup", self.started)

        started = time.monotonic()
        await self._navigate(page, page_url)
        self._phase_done("navigate", started)
        if settings.demo_mode:
            await page.evaluate(_DEMO_SCRIPT)

        started = time.monotonic()
        ready_state, report = await self._wait_until_ready(page)
        ready_at = time.monotonic()
        missing = await self._check_resources(print_incomplete)
        if not print_incomplete:
            self._check_nothing_came_late(report, ready_at)
        self._phase_done("ready", started)

        started = time.monotonic()
        try:
            await self._print(page, pdf_path, paper_format)
        except (RenderError, PlaywrightError):
            # A navigation that starts while printing makes Chromium's print fail vaguely.
            await self._settle_navigation(page)
            self._check_still_on_report(page)
            raise
        self._check_still_on_report(page)  # the PDF may be of whatever the page went to
        self._phase_done("print", started)

        logger.debug(
            "%s: %s, %s", self.label, ready_state,
            ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items()),
        )  # fmt: skip
        prevented = report.prevented_redirects if report else ()
        return RenderResult(
            pdf_path=pdf_path,
            ready_state=ready_state,
            readiness_markers=report.markers if report else (),
            blocked_login_requests=tuple(self.routes.blocked_login_requests) + prevented,
            patched_scripts=self._scripts_patched(),
            page_errors=self.events.page_errors,
            failed_requests=self.events.failed_requests,
            timings=dict(self.timings),
            missing_resources=tuple(missing),
        )

    async def _check_resources(self, print_incomplete: bool) -> list[str]:
        """Wait for stylesheets, fonts and scripts still loading (up to the navigation
        timeout from their start); IncompletePage if any failed, unless print_incomplete."""
        timeout = self.settings.wait_for_navigation_timeout_sec
        await self.resources.settle(timeout)
        problems = self.resources.problems(older_than=timeout)
        for problem in problems:
            if not problem.shapes_page:
                logger.info("%s: %s", self.label, problem.line())
        lines = [p.line() for p in blocking(problems)]
        if lines and not print_incomplete:
            raise IncompletePage(lines)
        for line in lines:
            logger.warning("%s: printing without %s", self.label, line)
        return lines

    def _check_nothing_came_late(self, report: ProbeReport | None, ready_at: float) -> None:
        """The probe gives up on a script still loading after its stall grace (MathJax from a
        slow CDN) and reports the page ready without it; if that script arrived after all,
        the page was not printed as it should look: IncompletePage, so it is rendered again
        (the asset cache then has the script at once)."""
        markers = report.markers if report else ()
        if not any(m.startswith(_GAVE_UP_MARKERS) for m in markers):
            return
        late = self.resources.arrived_after(ready_at)
        if late:
            raise IncompletePage([p.line() for p in late])

    def _scripts_patched(self) -> tuple[str, ...]:
        """Scripts the page got with their login redirect taken out: patched for it, or a
        patched copy from Chromium's cache (never paused, so only the page's requests tell)."""
        self.patched_scripts.update(self.routes.patched_scripts)
        requested = (loggable_url(url) for url in self.resources.requested_urls())
        served = [url for url in requested if url in self.patched_scripts]
        return tuple(dict.fromkeys(self.routes.patched_scripts + served))

    def explain(self, error: RenderError) -> RenderError:
        """The failed render's cause: a resource that did not load, if one did not."""
        if isinstance(error, IncompletePage):
            return error
        # When the page did not load or get ready, what it still waited for is the cause.
        waited = self.settings.wait_for_navigation_timeout_sec
        lines = [p.line() for p in blocking(self.resources.problems(older_than=0, said=waited))]
        return IncompletePage(lines) if lines else error

    async def diagnose(self, folder: Path, html: str, error: RenderError) -> None:
        await write_diagnostics(
            folder,
            self.slot.page,
            self.slot.cdp,
            reason=str(error),
            report_html=html,
            console=self.events.console,
            requests=self.resources.requests(),
            problems=[p.line() for p in self.resources.problems(older_than=0)],
        )

    def detach(self) -> None:
        self.events.detach(self.slot.page)
        self.resources.detach(self.slot.page)

    def _phase_done(self, name: str, started: float) -> None:
        self.timings[name] = time.monotonic() - started
        if self.on_phase is not None:
            self.on_phase(name)

    async def _navigate(self, page: Page, url: str) -> None:
        # DOMContentLoaded, not load: a script that never finishes loading (MathJax from an
        # unreachable CDN) would hold the load event forever. The readiness probe waits for
        # load itself, but gives up on it after its stall grace.
        timeout = self.settings.wait_for_navigation_timeout_sec
        try:
            await page.goto(url, wait_until="domcontentloaded")
        except PlaywrightError as exc:
            raise RenderError(
                f"{self.label}: the report page did not load within {timeout:g} s: "
                f"{first_line(exc)}"
            ) from None

    async def _wait_until_ready(self, page: Page) -> tuple[ReadyState, ProbeReport | None]:
        settings = self.settings
        if not settings.wait_for_ready_signal:
            await self._wait_for_load_event(page)
            self._check_still_on_report(page)
            return "skipped", await probe_snapshot(page)
        timeout = settings.wait_for_ready_signal_timeout_sec
        try:
            report = await wait_until_ready(page, timeout)
        except RenderError:
            await self._settle_navigation(page)
            self._check_still_on_report(page)  # the clearer reason, when it is the reason
            raise
        self._check_still_on_report(page)
        if report.ready:
            return "ready", report
        pending = ", ".join(report.pending) or "fonts"
        message = f"{self.label}: page not ready after {timeout:g} s (waiting for {pending})"
        if not settings.continue_after_ready_signal_timeout:
            raise ReadinessTimeout(message)
        logger.warning("%s; rendering anyway", message)
        return "timeout", report

    async def _wait_for_load_event(self, page: Page) -> None:
        timeout = self.settings.wait_for_navigation_timeout_sec
        try:
            await page.wait_for_load_state("load", timeout=timeout * 1000)
        except PlaywrightError:
            logger.warning("%s: no load event after %g s; rendering anyway", self.label, timeout)

    async def _settle_navigation(self, page: Page) -> None:
        # "Execution context was destroyed" arrives before Playwright has the new URL.
        with contextlib.suppress(PlaywrightError):
            await page.wait_for_url(lambda url: url != self.page_url, timeout=1000)

    def _check_still_on_report(self, page: Page) -> None:
        if self.events.crashed:
            raise RenderError(f"{self.label}: the page crashed")
        if page.url != self.page_url:
            raise RenderError(
                f"{self.label}: the page navigated away from the report "
                f"(to {loggable_url(page.url)})"
            )

    async def _print(self, page: Page, pdf_path: Path, paper_format: PaperFormat) -> None:
        width, height = paper_size_css(paper_format)
        margin = self.settings.report_page_margin
        try:
            pdf = await asyncio.wait_for(
                page.pdf(
                    width=width,
                    height=height,
                    print_background=True,
                    display_header_footer=False,
                    margin={"top": margin, "right": margin, "bottom": margin, "left": margin},
                    prefer_css_page_size=False,
                ),
                _PRINT_TIMEOUT_SEC,
            )
        except TimeoutError:
            raise RenderError(
                f"{self.label}: printing took longer than {_PRINT_TIMEOUT_SEC:g} s"
            ) from None
        try:
            await asyncio.to_thread(write_bytes_atomically, pdf_path, pdf)
        except OSError as exc:
            raise RenderError(f"{self.label}: could not write the PDF: {exc}") from None

