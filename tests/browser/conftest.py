"""Fixtures of the browser tier: Debian's Chromium, MathJax from npm, a loopback HTTP server.

Missing prerequisites fail the tests with the reason; they never skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moodle_archive_job.render import Renderer
from moodle_archive_job.render.asset_cache import AssetCache
from moodle_archive_job.render.executable import is_executable
from moodle_archive_job.settings import RunnerSettings
from tests.browser.server import LoopbackServer

T = TypeVar("T")

CACHE_DIR = Path(
    os.environ.get("MOODLE_ARCHIVER_CACHE_DIR", "~/.cache/moodle-archive-operator")
).expanduser()
NODE_MODULES = CACHE_DIR / "npm" / "node_modules"
MATHJAX_ENTRIES = {
    "mathjax2": "MathJax.js",
    "mathjax3": "es5/tex-mml-chtml.js",
    "mathjax4": "tex-mml-chtml.js",
}
# Belt and braces for "loopback only": Chromium resolves no host name but 127.0.0.1.
LOOPBACK_ONLY = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",)


def browser_settings(**overrides: Any) -> RunnerSettings:
    """The reference defaults, independent of QUIZ_ARCHIVER_* in the environment, except for
    generous timeouts: the suite also runs on busy CI machines. Tests of timeouts set theirs."""
    values: dict[str, Any] = {
        "chromium_path": RunnerSettings().chromium_path,  # QUIZ_ARCHIVER_CHROMIUM_PATH
        "report_base_viewport_width": 1240,
        "report_page_margin": "5mm",
        "wait_for_ready_signal": True,
        "wait_for_ready_signal_timeout_sec": 90,
        "continue_after_ready_signal_timeout": False,
        "wait_for_navigation_timeout_sec": 90,
        "prevent_redirect_to_login": True,
        "skip_https_cert_validation": False,
        "proxy_server_url": None,
        "demo_mode": False,
    }
    values.update(overrides)
    return RunnerSettings(**values)


class LoopThread:
    """An event loop in a thread, so a Renderer can outlive one test without async fixtures."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class BrowserHarness:
    """The loop thread, the test server, and a shared Renderer with default settings."""

    def __init__(self, loop: LoopThread, server: LoopbackServer) -> None:
        self.loop = loop
        self.server = server
        self.renderer: Renderer | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return self.loop.run(coro, timeout)

    def with_renderer(
        self, settings: RunnerSettings, use: Callable[[Renderer], Awaitable[T]], **kwargs: Any
    ) -> T:
        """Run `use` with a Renderer of its own (for settings other than the defaults)."""

        async def scoped() -> T:
            async with Renderer(settings, extra_browser_args=LOOPBACK_ONLY, **kwargs) as renderer:
                return await use(renderer)

        return self.run(scoped())


def _require_prerequisites() -> None:
    chromium = browser_settings().chromium_path
    if not is_executable(chromium):
        pytest.fail(
            f"Chromium not found at {chromium}: install Debian's chromium-headless-shell "
            "(make setup) or set QUIZ_ARCHIVER_CHROMIUM_PATH",
            pytrace=False,
        )
    for package, entry in MATHJAX_ENTRIES.items():
        if not (NODE_MODULES / package / entry).is_file():
            pytest.fail(
                f"{package} is missing under {NODE_MODULES} (run make setup; "
                "MOODLE_ARCHIVER_CACHE_DIR selects the cache)",
                pytrace=False,
            )
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext not found: install poppler-utils (make setup)", pytrace=False)


@pytest.fixture(scope="session")
def browser_harness() -> Iterator[BrowserHarness]:
    _require_prerequisites()
    server = LoopbackServer(NODE_MODULES)
    server.start()
    loop = LoopThread()
    harness = BrowserHarness(loop, server)
    renderer = Renderer(browser_settings(), extra_browser_args=LOOPBACK_ONLY)
    try:
        harness.renderer = harness.run(renderer.__aenter__())
        yield harness
    finally:
        if harness.renderer is not None:
            harness.run(renderer.__aexit__(None, None, None))
        loop.close()
        server.stop()


@pytest.fixture
def harness(browser_harness: BrowserHarness) -> BrowserHarness:
    """The session's harness; its renderer's asset cache emptied (each test is a new job)."""
    renderer = browser_harness.renderer
    if renderer is not None and renderer.assets is not None:
        browser_harness.run(_clear(renderer.assets))
    return browser_harness


async def _clear(assets: AssetCache) -> None:
    assets.clear()


@pytest.fixture
def server(harness: BrowserHarness) -> LoopbackServer:
    """The session's server, its request log emptied for this test."""
    harness.server.forget_requests()
    return harness.server
