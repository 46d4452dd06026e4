"""Browser contexts with one page each, reused attempt after attempt and wiped in between.

A fresh context per attempt costs about a CPU-second (a new renderer process, its V8 and
Blink, the context's network stack); reusing one page in one context keeps the renderer
process and its compiled code. Isolation between attempts comes from `PageSlot.wipe`, run
after every attempt: the tab leaves the report for about:blank (its scripts, timers and
requests end with it), the request interception ends, and sessionStorage of its frames,
window.name, the cookies and the storage of every origin its frames showed (local storage,
IndexedDB, Cache Storage, file systems, ...) are cleared. A slot whose attempt failed in
any way, whose wipe failed, or that has served `max_uses` attempts is closed instead.

Chromium's HTTP and memory caches are kept from one attempt to the next of the same job
(`keep_http_cache`). They hold what HTTP lets a browser keep: the theme, Moodle's revisioned
JavaScript and MathJax, and whatever else Moodle marks cacheable, all for the same site,
token and session-less page; a response that may not be stored is fetched again. Keeping
them spares every attempt parsing the theme's stylesheets, decoding its fonts and compiling
MathJax again (bench/interception_bench.py). With the job's asset cache off they are
cleared too, so that every attempt fetches anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, CDPSession, Frame, Page
from playwright.async_api import Error as PlaywrightError

from .errors import first_line
from .interceptor import FetchInterceptor

logger = logging.getLogger(__name__)

DEFAULT_MAX_USES = 20  # a reused renderer process grows by about 5 MiB per report
_WIPE_TIMEOUT_SEC = 15.0
_CLOSE_TIMEOUT_SEC = 15.0
_CLEAR_SESSION_STORAGE = "() => { try { window.sessionStorage.clear(); } catch (e) {} }"


@dataclass
class PageSlot:
    context: BrowserContext
    page: Page
    cdp: CDPSession
    interceptor: FetchInterceptor
    uses: int = 0
    origins: set[str] = field(default_factory=set)  # whose storage the next wipe clears

    def track_origins(self) -> None:
        self.page.on("framenavigated", self._frame_navigated)

    def _frame_navigated(self, frame: Frame) -> None:
        parts = urlsplit(frame.url)
        if parts.scheme in ("http", "https") and parts.netloc:
            self.origins.add(f"{parts.scheme}://{parts.netloc}")

    async def wipe(self, clear_http_cache: bool) -> None:
        """Leave no trace of the last attempt for the next one (see the module docstring)."""
        async with asyncio.timeout(_WIPE_TIMEOUT_SEC):
            for frame in self.page.frames:  # sessionStorage belongs to the tab, per origin
                if urlsplit(frame.url).scheme in ("http", "https"):
                    with contextlib.suppress(PlaywrightError):  # a frame going away
                        await frame.evaluate(_CLEAR_SESSION_STORAGE)
            await self.page.goto("about:blank")
            await self.page.evaluate("() => { window.name = ''; }")
            await self.interceptor.disable()
            await self.context.clear_cookies()
            if clear_http_cache:
                await self.cdp.send("Network.clearBrowserCache")
            for origin in sorted(self.origins):
                await self.cdp.send(
                    "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"}
                )
            self.origins.clear()

    async def close(self, label: str) -> None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_SEC):
                await self.context.close()
        except (PlaywrightError, TimeoutError) as exc:
            logger.debug("%s: closing the browser context: %s", label, first_line(exc))


class SlotPool:
    """Idle slots, each taken by one render at a time; new ones made as concurrency asks.

    `init_script` runs in every document of every slot (the readiness probe)."""

    def __init__(
        self,
        new_context: Callable[[], Awaitable[BrowserContext]],
        init_script: str,
        max_uses: int,
        keep_http_cache: bool = True,
        proxy_credentials: tuple[str, str] | None = None,
    ) -> None:
        self._new_context = new_context
        self._init_script = init_script
        self._max_uses = max_uses
        self._keep_http_cache = keep_http_cache
        self._proxy_credentials = proxy_credentials
        self._idle: list[PageSlot] = []

    async def take(self) -> PageSlot:
        if self._idle:
            return self._idle.pop()
        context = await self._new_context()
        try:
            await context.add_init_script(self._init_script)
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
        except BaseException:
            with contextlib.suppress(PlaywrightError):
                await context.close()
            raise
        slot = PageSlot(context, page, cdp, FetchInterceptor(cdp, self._proxy_credentials))
        slot.track_origins()
        return slot

    async def give_back(self, slot: PageSlot, label: str) -> None:
        """Wipe the slot for the next attempt, or close it when it is used up or unwipeable."""
        slot.uses += 1
        if slot.uses >= self._max_uses or slot.page.is_closed():
            await slot.close(label)
            return
        try:
            await slot.wipe(clear_http_cache=not self._keep_http_cache)
        except (PlaywrightError, TimeoutError) as exc:
            logger.debug("%s: the browser context could not be wiped: %s", label, first_line(exc))
            await slot.close(label)
            return
        except BaseException:
            await slot.close(label)
            raise
        self._idle.append(slot)

    async def close_all(self) -> None:
        idle, self._idle = self._idle, []
        for slot in idle:
            await slot.close("idle slot")
