"""What request interception costs Chromium on the real Moodle 5.0 sample: CPU-seconds of
Chromium per page (load, MathJax, print to PDF, back to about:blank) with no interception at
all, against a Playwright route that only lets every request through (`route.continue_`),
against no route but Chromium's cache cleared after every page (as the runner's wipe did
until session 6), and against the runner's own interception (render/interceptor.py and
render/routes.py: Chromium's Fetch domain, the job's asset cache, the cache kept).

With any route on a context Playwright turns Chromium's cache off, so each page parses its
stylesheets, decodes its fonts and parses its scripts again, and every request makes a trip
through the driver; without routes Chromium's memory and HTTP caches serve the repeats. The
runner used to route every request (the report's URL, the asset cache, the login-redirect
guard); the last mode shows what its Fetch-domain interception leaves of that. The sample's
resources (the Moodle stand-ins, MathJax 3 with a CDN's Cache-Control, --theme as in
bench/boost_theme.py) come from a loopback server in this process; each mode has its own
Chromium (launched like the runner's) with one context and page, and the modes alternate
page by page. In the runner's mode the report is answered on its own URL from memory, as
the runner does.

    .venv/bin/python bench/interception_bench.py [--pages 12] [--warm-up 2]
        [--theme stand-in|bootstrap]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from playwright.async_api import Browser, CDPSession, Page, async_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.boost_theme import THEMES, installed, serve_bootstrap_theme  # noqa: E402
from bench.render_bench import NODE_MODULES, tree_cpu_seconds  # noqa: E402
from moodle_archive_job.render.asset_cache import AssetCache  # noqa: E402
from moodle_archive_job.render.asset_fetcher import AssetFetcher  # noqa: E402
from moodle_archive_job.render.chromium import launch_args  # noqa: E402
from moodle_archive_job.render.interceptor import FetchInterceptor  # noqa: E402
from moodle_archive_job.render.routes import AttemptRoutes, RouteLog, moodle_roots  # noqa: E402
from moodle_archive_job.settings import RunnerSettings  # noqa: E402
from tests.browser.moodle_sample import sample_html, serve_moodle_stand_in  # noqa: E402
from tests.browser.server import LoopbackServer  # noqa: E402

PAGE_PATH = "/mock/attempt/sample"
MATHJAX_SETTLE_MS = 1500  # the sample's two formulas are typeset well within this


@dataclass
class Mode:
    name: str
    browser: Browser
    page: Page
    chromium: psutil.Process
    cdp: CDPSession | None = None  # clears Chromium's cache after every page when set
    routes: AttemptRoutes | None = None  # the runner's interception, per page
    cpu_per_page: list[float] = field(default_factory=list)

    def cpu(self) -> float:
        return tree_cpu_seconds(self.chromium)


async def open_mode(
    pw: object, name: str, routed: bool, clear_cache: bool = False, runners: str = ""
) -> Mode:
    """runners: the origin, for the runner's interception of the report at PAGE_PATH."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    browser = await pw.chromium.launch(  # type: ignore[attr-defined]
        executable_path=RunnerSettings().chromium_path, args=launch_args(), headless=True
    )
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    chromium = min(
        (p for p in started if "chrom" in " ".join(p.cmdline()[:2])), key=lambda p: p.pid
    )
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    if routed:
        await context.route("**/*", lambda route: route.continue_())
    page = await context.new_page()
    cdp = await context.new_cdp_session(page) if clear_cache or runners else None
    if not runners:
        return Mode(name, browser, page, chromium, cdp)
    assert cdp is not None
    routes = AttemptRoutes(
        FetchInterceptor(cdp),
        page_url=runners + PAGE_PATH,
        html=sample_html(runners),
        roots=moodle_roots(runners, sample_html(runners)),
        prevent_login_redirect=True,
        assets=AssetCache(),
        fetcher=AssetFetcher(RunnerSettings()),
        fetch_timeout_sec=30,
        log=RouteLog("bench"),
    )
    return Mode(name, browser, page, chromium, routes=routes)


async def one_page(mode: Mode, url: str) -> float:
    before = mode.cpu()
    if mode.routes is not None:
        await mode.routes.interceptor.enable(mode.routes.patterns(), mode.routes.handle)
    await mode.page.goto(url, wait_until="load")
    await mode.page.wait_for_timeout(MATHJAX_SETTLE_MS)
    await mode.page.pdf(format="A4")
    await mode.page.goto("about:blank")
    if mode.routes is not None:
        await mode.routes.interceptor.disable()
    if mode.cdp is not None:
        await mode.cdp.send("Network.clearBrowserCache")
    return mode.cpu() - before


async def measure(origin: str, pages: int, warm_up: int) -> list[Mode]:
    async with async_playwright() as pw:
        modes = [await open_mode(pw, "no route", False),
                 await open_mode(pw, "pass-through route", True),
                 await open_mode(pw, "cache cleared", False, clear_cache=True),
                 await open_mode(pw, "runner's Fetch", False, runners=origin)]  # fmt: skip
        for n in range(warm_up + pages):
            for mode in modes:
                cpu = await one_page(mode, origin + PAGE_PATH)
                if n >= warm_up:
                    mode.cpu_per_page.append(cpu)
        for mode in modes:
            await mode.browser.close()
    return modes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument("--theme", choices=THEMES, default="stand-in")
    args = parser.parse_args()
    server = LoopbackServer(NODE_MODULES)
    server.start()
    try:
        serve_moodle_stand_in(server)
        server.extra_headers["/harness-static/mathjax/"] = {
            "Cache-Control": "public, max-age=86400"
        }
        if args.theme == "bootstrap":
            serve_bootstrap_theme(server, installed())
        server.serve(PAGE_PATH, sample_html(server.origin), "text/html")
        modes = asyncio.run(measure(server.origin, args.pages, args.warm_up))
    finally:
        server.stop()
    for mode in modes:
        mean = sum(mode.cpu_per_page) / len(mode.cpu_per_page)
        print(f"  {mode.name:<19} {mean:.3f} CPU-s of Chromium per page "
              f"(min {min(mode.cpu_per_page):.3f}, max {max(mode.cpu_per_page):.3f})")  # fmt: skip
    print(f"({args.pages} pages each, theme {args.theme}, {RunnerSettings().chromium_path}, "
          f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
