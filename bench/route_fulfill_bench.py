"""What answering a page's script through Playwright costs: CPU-seconds per page load of a
page with MathJax 3's 1.1 MB loader, by process, when Chromium fetches the script itself
from a loopback server (no route), when a route lets it through (route.continue_), and when
the route answers with the bytes from Python (route.fulfill with a body), and when it
answers with a response whose body the driver holds (route.fulfill(response=...) of a
response fetched once by a separate APIRequestContext, as the asset cache did in sessions
4-5). Since session 6 the runner uses no Playwright routes at all (render/interceptor.py;
bench/interception_bench.py measures that).

The three alternate (--rounds) on one Chromium launched like the runner's, so they see the
same machine load.

    .venv/bin/python bench/route_fulfill_bench.py [--loads 15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from playwright.async_api import APIResponse, Route, async_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import process_kind  # noqa: E402
from bench.render_bench import NODE_MODULES  # noqa: E402
from moodle_archive_job.render.chromium import launch_args  # noqa: E402
from moodle_archive_job.settings import RunnerSettings  # noqa: E402

SCRIPT = (NODE_MODULES / "mathjax3" / "es5" / "tex-mml-chtml.js").read_bytes()
PAGE = b"<html><body><script src='/mathjax.js'></script><p>A page</p></body></html>"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        script = self.path.startswith("/mathjax.js")
        body = SCRIPT if script else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "application/javascript" if script else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        with contextlib.suppress(OSError):  # the page went on
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _cpu(driver: psutil.Process) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    me = psutil.Process().cpu_times()
    totals["runner python"] = me.user + me.system
    for proc in [driver, *driver.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            totals[process_kind(proc)] += times.user + times.system
        except psutil.Error:
            continue
    return totals


async def _fulfill(route: Route) -> None:
    await route.fulfill(status=200, headers={"content-type": "application/javascript"},
                        body=SCRIPT)  # fmt: skip


async def _continue(route: Route) -> None:
    await route.continue_()


_HELD: list[APIResponse] = []  # fetched once by a job-wide request context; body in the driver


async def _fulfill_held(route: Route) -> None:
    await route.fulfill(response=_HELD[0], headers={"content-type": "application/javascript"})


MODES: dict[str, Callable[[Route], Awaitable[None]] | None] = {
    "Chromium fetches (no route)": None,
    "route.continue_": _continue,
    "route.fulfill from Python": _fulfill,
    "route.fulfill, body held by the driver": _fulfill_held,
}


async def measure(origin: str, loads: int, rounds: int) -> dict[str, dict[str, float]]:
    before = {p.pid for p in psutil.Process().children()}
    results: dict[str, dict[str, float]] = {mode: defaultdict(float) for mode in MODES}
    async with async_playwright() as playwright:
        driver = next(p for p in psutil.Process().children() if p.pid not in before)
        browser = await playwright.chromium.launch(
            executable_path=RunnerSettings().chromium_path, args=launch_args()
        )
        context = await browser.new_context()
        page = await context.new_page()
        fetcher = await playwright.request.new_context()
        _HELD.append(await fetcher.fetch(origin + "mathjax.js"))
        for _ in range(rounds):
            for mode, handler in MODES.items():
                if handler is not None:
                    await context.route("**/mathjax.js", handler)
                await page.goto(origin, wait_until="load")  # warm
                start = _cpu(driver)
                for _ in range(loads):
                    await page.goto(origin, wait_until="load")
                end = _cpu(driver)
                for kind, seconds in end.items():
                    results[mode][kind] += (seconds - start.get(kind, 0.0)) / loads / rounds
                await context.unroute_all()
        await fetcher.dispose()
        await browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        results = asyncio.run(measure(origin, args.loads, args.rounds))
    finally:
        server.shutdown()
    kinds = sorted({k for r in results.values() for k, v in r.items() if v >= 0.001})
    print(f"CPU-seconds per page load{'':<14}" + "".join(f"{k[:18]:>20}" for k in kinds)
          + f"{'total':>10}")  # fmt: skip
    for mode, spent in results.items():
        print(f"  {mode:<37}" + "".join(f"{spent.get(k, 0.0):>20.3f}" for k in kinds)
              + f"{sum(spent.values()):>10.3f}")  # fmt: skip
    print(f"({args.loads} loads x {args.rounds} rounds each, load average "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
