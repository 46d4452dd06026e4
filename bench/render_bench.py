"""Render cost of the real Moodle 5.0 attempt report on one Chromium, at concurrency 1 and 4,
and post-processing cost per PDF (image optimisation, PDF/A-3b with Ghostscript).

The sample is served from a loopback server with the Moodle stand-in scripts of the browser
tests, so its two formulas are typeset by MathJax 3 loaded through the (stand-in) Moodle
loader; --offline leaves every Moodle resource 404 instead (no MathJax).

    .venv/bin/python bench/render_bench.py [--attempts 16] [--offline]

Per attempt: navigate (DOMContentLoaded of the report on its fake URL), ready (readiness
probe), print (print-to-PDF and write), and their sum; setup (a reused or new browser context,
routes) apart. "wall/attempt" is the wall time of a batch divided by its attempts: the cost per
attempt when several are in flight. "CPU/attempt" is the CPU time of this process, the
Playwright driver and Chromium (all its processes) per attempt: the figure that does not
depend on what else runs on the machine (wall times do; the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from pypdf import PdfReader

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from _measure import TreeMemorySampler  # noqa: E402

from moodle_archive_job.pdf_postprocess import (  # noqa: E402
    check_ghostscript,
    convert_to_pdfa,
    optimize_images,
)
from moodle_archive_job.render import Renderer, RenderResult  # noqa: E402
from moodle_archive_job.settings import RunnerSettings  # noqa: E402
from moodle_archive_job.task import ImageOptimize, PaperFormat  # noqa: E402
from tests.browser.moodle_sample import sample_html, serve_moodle_stand_in  # noqa: E402
from tests.browser.server import LoopbackServer  # noqa: E402

NODE_MODULES = (
    Path(os.environ.get("MOODLE_ARCHIVER_CACHE_DIR", "~/.cache/moodle-archive-operator"))
    .expanduser()
    .joinpath("npm", "node_modules")
)
LOOPBACK_ONLY = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",)


def settings() -> RunnerSettings:
    return RunnerSettings(
        chromium_path=RunnerSettings().chromium_path,  # QUIZ_ARCHIVER_CHROMIUM_PATH
        wait_for_ready_signal=True,
        wait_for_ready_signal_timeout_sec=30,
        continue_after_ready_signal_timeout=False,
        wait_for_navigation_timeout_sec=30,
        prevent_redirect_to_login=True,
        demo_mode=False,
    )


def tree_cpu_seconds(root: psutil.Process | None = None) -> float:
    """CPU time of `root` (this process by default) and its descendants, reaped ones too."""
    root = root or psutil.Process()
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


async def batch(
    renderer: Renderer, html: str, origin: str, out: Path, attempts: int, concurrency: int
) -> tuple[float, list[RenderResult]]:
    slots = asyncio.Semaphore(concurrency)

    async def one(n: int) -> RenderResult:
        async with slots:
            pdf = out / f"c{concurrency}-{n}.pdf"
            return await renderer.render_pdf(html, origin, pdf, PaperFormat.A4)

    cpu = tree_cpu_seconds()
    started = time.perf_counter()
    results = await asyncio.gather(*(one(n) for n in range(attempts)))
    wall = time.perf_counter() - started
    report_batch(concurrency, wall, tree_cpu_seconds() - cpu, list(results))
    return wall, list(results)


def report_batch(concurrency: int, wall: float, cpu: float, results: list[RenderResult]) -> None:
    def mean(key: str) -> float:
        return statistics.mean(r.timings[key] for r in results)

    totals = [r.timings["navigate"] + r.timings["ready"] + r.timings["print"] for r in results]
    count = len(results)
    print(
        f"  concurrency {concurrency}: {count} attempts in {wall:.2f} s "
        f"(load average {os.getloadavg()[0]:.1f}): wall/attempt {wall / count:.3f} s, "
        f"CPU/attempt {cpu / count:.3f} s\n"
        f"    per attempt: navigate {mean('navigate'):.3f} + ready {mean('ready'):.3f} + print "
        f"{mean('print'):.3f} = {statistics.mean(totals):.3f} s (median "
        f"{statistics.median(totals):.3f}, max {max(totals):.3f}); setup {mean('setup'):.3f} s"
    )


async def render_runs(
    html: str, origin: str, out: Path, attempts: int
) -> dict[int, list[RenderResult]]:
    started = time.perf_counter()
    async with Renderer(settings(), extra_browser_args=LOOPBACK_ONLY) as renderer:
        print(f"Chromium start: {time.perf_counter() - started:.2f} s")
        print("  warm-up:", end="")
        await batch(renderer, html, origin, out, 2, 1)  # disk cache, JIT
        runs = {}
        for concurrency in (1, 4):
            _, runs[concurrency] = await batch(renderer, html, origin, out, attempts, concurrency)
        markers = runs[1][0].readiness_markers
        print(f"  readiness markers of one attempt: {', '.join(markers)}")
        return runs


def postprocess_runs(pdfs: list[Path], gs: str) -> None:
    optimize = ImageOptimize(width=1024, height=1024, quality=75)
    steps = {
        "optimize_images": lambda pdf: optimize_images(pdf, optimize),
        "convert_to_pdfa": lambda pdf: convert_to_pdfa(pdf, gs, 30, "bench"),
    }
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for pdf in pdfs:
        for name, step in steps.items():
            cpu_before, started = _own_and_children_cpu(), time.perf_counter()
            step(pdf)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(_own_and_children_cpu() - cpu_before)
    for name in steps:
        print(
            f"  {name}: wall mean {statistics.mean(wall[name]):.3f} s (median "
            f"{statistics.median(wall[name]):.3f}), CPU mean {statistics.mean(cpu[name]):.3f} s "
            f"over {len(pdfs)} files (load average {os.getloadavg()[0]:.1f})"
        )
    pages = len(PdfReader(pdfs[0]).pages)
    size = statistics.mean(p.stat().st_size for p in pdfs) / 1024
    print(f"  {pages} pages, {size:.0f} KiB per PDF after both")


def _own_and_children_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # Ghostscript, once it has exited
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=16)
    parser.add_argument("--offline", action="store_true", help="no Moodle stand-in, no MathJax")
    args = parser.parse_args()

    gs = shutil.which("gs")
    if gs is None:
        print("Ghostscript (gs) not found", file=sys.stderr)
        return 2
    server = LoopbackServer(NODE_MODULES)
    server.start()
    if not args.offline:
        serve_moodle_stand_in(server)
    html = sample_html(server.origin)
    print(
        f"Sample: Moodle 5.0 attempt report ({len(html) // 1024} KiB), "
        f"{'offline' if args.offline else 'MathJax 3 via the Moodle loader stand-in'}; "
        f"{os.cpu_count()} CPUs; Ghostscript {check_ghostscript(gs)}"
    )
    try:
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch)
            with TreeMemorySampler(os.getpid()) as memory:
                runs = asyncio.run(render_runs(html, server.origin, out, args.attempts))
            print(
                f"  peak memory (PSS, this process + Playwright + Chromium): "
                f"{memory.peak_bytes / 2**20:.0f} MiB"
            )
            print("Post-processing, per file (sequential):")
            postprocess_runs([r.pdf_path for r in runs[1]], gs)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
