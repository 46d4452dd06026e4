"""The job's asset cache against a distant MathJax CDN: time per attempt with and without it.

The real Moodle 5.0 attempt report (tests/fixtures/moodle-5.0) is rendered by one Renderer
per mode, like one job each, from a loopback server with the Moodle stand-in of the browser
tests. MathJax comes from that server's /harness-static/mathjax/ "CDN", which answers
like a distant one: the loader (tex-mml-chtml.js, 1.1 MB) after --loader-delay seconds
(3.7 by default), every other file of it (fonts) after --file-delay, all with a CDN's
`Cache-Control: public, max-age=31536000, immutable`. Moodle's revisioned files (theme CSS,
javascript.php) answer at once. Both modes run in the same process one after the other with
the same attempts and concurrency; printed side by side with the requests the "CDN" got.

    .venv/bin/python bench/asset_cache_bench.py [--attempts 12] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.render_bench import LOOPBACK_ONLY, NODE_MODULES, settings, tree_cpu_seconds  # noqa: E402
from moodle_archive_job.render import Renderer  # noqa: E402
from moodle_archive_job.task import PaperFormat  # noqa: E402
from tests.browser.moodle_sample import sample_html, serve_moodle_stand_in  # noqa: E402
from tests.browser.server import LoopbackServer  # noqa: E402

CDN = "/harness-static/mathjax/"
LOADER = CDN + "es5/tex-mml-chtml.js"


async def run_mode(
    cache_mib: int, html: str, origin: str, out: Path, attempts: int, concurrency: int
) -> tuple[float, float, list[float]]:
    """Wall seconds, CPU seconds (this process, driver, Chromium) and per-attempt seconds."""
    slots = asyncio.Semaphore(concurrency)
    per_attempt: list[float] = []
    untypeset: list[str] = []
    async with Renderer(
        settings().model_copy(update={"asset_cache_mib": cache_mib}),
        extra_browser_args=LOOPBACK_ONLY,
    ) as renderer:

        async def one(n: int) -> None:
            async with slots:
                started = time.perf_counter()
                pdf = out / f"{cache_mib}-{n}.pdf"
                result = await renderer.render_pdf(html, origin, pdf, PaperFormat.A4)
                per_attempt.append(time.perf_counter() - started)
                if not any(m.startswith("mathjax-3-typeset") for m in result.readiness_markers):
                    untypeset.append(", ".join(result.readiness_markers[-3:]))

        cpu = tree_cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(attempts)))
        if untypeset:
            print(f"  MathJax did not typeset in {len(untypeset)} attempts: {untypeset[0]}")
        return time.perf_counter() - started, tree_cpu_seconds() - cpu, per_attempt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--loader-delay", type=float, default=3.7)
    parser.add_argument("--file-delay", type=float, default=0.3)
    args = parser.parse_args()

    server = LoopbackServer(NODE_MODULES)
    server.start()
    serve_moodle_stand_in(server)
    server.delay(CDN, args.file_delay)
    server.delay(LOADER, args.loader_delay)
    server.extra_headers[CDN] = {"Cache-Control": "public, max-age=31536000, immutable"}
    html = sample_html(server.origin)
    print(
        f"Real Moodle 5.0 sample, {args.attempts} attempts, {args.concurrency} at a time; "
        f"MathJax loader after {args.loader_delay:g} s, its other files after "
        f"{args.file_delay:g} s; {os.cpu_count()} CPUs"
    )
    rows = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for label, mib in (("without the cache", 0), ("with the cache", 64)):
                server.forget_requests()
                wall, cpu, each = asyncio.run(
                    run_mode(mib, html, server.origin, Path(scratch), args.attempts,
                             args.concurrency)
                )  # fmt: skip
                rows.append((label, wall, cpu, each, len(server.requested(CDN)),
                             len(server.requested(LOADER))))  # fmt: skip
    finally:
        server.stop()
    n = args.attempts
    print(f"{'':>18} {'wall/attempt':>12} {'mean render':>12} {'CPU/attempt':>12} "
          f"{'CDN requests':>13} {'loader fetches':>15}")  # fmt: skip
    for label, wall, cpu, each, cdn, loader in rows:
        print(f"{label:>18} {wall / n:11.2f}s {sum(each) / n:11.2f}s {cpu / n:11.3f}s "
              f"{cdn:>13} {loader:>15}")  # fmt: skip
    (_, wall_off, *_), (_, wall_on, *_) = rows
    print(f"the cache makes an attempt {wall_off / wall_on:.1f}x faster "
          f"(load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
