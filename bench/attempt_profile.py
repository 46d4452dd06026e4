"""Where one attempt's CPU time goes: per phase and per kind of process, for the real Moodle
5.0 attempt report with PDF/A on, the current approach next to the previous one.

One attempt = what the runner does for it: fetch (the web service call, answered with the
real response captured from Moodle 5.0, and its parsing), page load (context setup and
navigation to DOMContentLoaded), readiness (MathJax 3 through the Moodle loader stand-in of
the browser tests, fonts), print (print to PDF and write), PDF/A (previous: Ghostscript's
conversion and its checks; current: the runner's pdfa_policy) and ZIP (adding the PDF to
the archive). The page's resources come from a loopback server in a child process (not
counted); the Moodle stand-ins are tiny, so a real Moodle's theme CSS and JavaScript cost
more in Chromium than here (--theme bootstrap serves a theme of a real one's size, see
bench/boost_theme.py).

Each approach has its own Chromium (and Playwright driver), like one job each, with the
asset cache on; attempts run one at a time, alternating between the approaches, so both see
the same machine load. CPU seconds are read from /proc (psutil) for this process, each
approach's driver and Chromium processes, and the reaped Ghostscript children, before and
after each phase, and averaged over the measured attempts (after --warm-up ones).

    .venv/bin/python bench/attempt_profile.py [--attempts 10] [--warm-up 2]
        [--theme stand-in|bootstrap]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench._measure import process_kind  # noqa: E402
from bench.boost_theme import THEMES, installed, serve_bootstrap_theme  # noqa: E402
from bench.render_bench import LOOPBACK_ONLY, NODE_MODULES, settings  # noqa: E402
from moodle_archive_job.archive_writer import ArchiveWriter  # noqa: E402
from moodle_archive_job.attempt_outcomes import AttemptOutcomes  # noqa: E402
from moodle_archive_job.moodle_api import AttemptReport  # noqa: E402
from moodle_archive_job.moodle_client import MoodleClient  # noqa: E402
from moodle_archive_job.pdf_postprocess import convert_to_pdfa  # noqa: E402
from moodle_archive_job.pdfa_policy import make_pdfa  # noqa: E402
from moodle_archive_job.render import Renderer  # noqa: E402
from moodle_archive_job.task import MoodleEndpoints, PaperFormat  # noqa: E402
from tests.browser.moodle_sample import SAMPLE, moved_to  # noqa: E402

RESPONSE = SAMPLE.with_name("moodle-5.0-generate_attempt_report-response.txt")
WS_PATH = "/webservice/rest/server.php"
PHASES = ("fetch", "page load", "readiness", "print", "context wipe", "PDF/A", "ZIP")
_RENDER_PHASES = {"navigate": "page load", "ready": "readiness", "print": "print"}


@dataclass(frozen=True)
class Approach:
    """How an attempt is rendered and made PDF/A; `previous` and `current` are compared."""

    name: str
    chromium_args: tuple[str, ...] = ()
    pdfa: Callable[[Path, int], None] = lambda pdf, n: _by_metadata_or_gs(pdf, n)


def _by_ghostscript(pdf: Path, _n: int) -> None:
    gs = shutil.which("gs")
    assert gs is not None
    convert_to_pdfa(pdf, gs, 60, "bench")


def _by_metadata_or_gs(pdf: Path, n: int) -> None:
    make_pdfa(pdf, n, settings(), AttemptOutcomes())


# previous: Ghostscript rewrites every PDF; current: the runner's way (pdfa_policy.py):
# metadata appended to Chromium's PDF, Ghostscript only for pages that need more.
APPROACHES = (
    Approach("previous", pdfa=_by_ghostscript),
    Approach("current", pdfa=_by_metadata_or_gs),
)


# --- the loopback server, in a child process ----------------------------------------------------


def _serve(pipe: multiprocessing.connection.Connection, theme: Path | None) -> None:
    from tests.browser.moodle_sample import serve_moodle_stand_in
    from tests.browser.server import LoopbackServer

    server = LoopbackServer(NODE_MODULES)
    server.start()
    serve_moodle_stand_in(server)
    if theme is not None:
        serve_bootstrap_theme(server, theme)
    server.extra_headers["/harness-static/mathjax/"] = {"Cache-Control": "public, max-age=86400"}
    body = moved_to(RESPONSE.read_text("utf-8"), server.origin)
    server.serve(WS_PATH, body, "application/json")
    pipe.send(server.origin)
    pipe.recv()  # until the parent is done
    server.stop()


@contextmanager
def loopback_server(theme: str = "stand-in") -> Iterator[str]:
    """The sample's resources from a child process; theme: see bench/boost_theme.py."""
    node_modules = installed() if theme == "bootstrap" else None
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(child, node_modules))
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)


# --- CPU accounting -----------------------------------------------------------------------------


@dataclass
class Tree:
    """This process, one approach's Playwright driver with its Chromium, reaped children."""

    driver_pid: int
    kinds: dict[int, str] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        me = psutil.Process()
        times = me.cpu_times()
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        totals: dict[str, float] = defaultdict(float)
        totals["runner python"] = times.user + times.system
        totals["ghostscript"] = reaped.ru_utime + reaped.ru_stime
        try:
            driver = psutil.Process(self.driver_pid)
            processes = [driver, *driver.children(recursive=True)]
        except psutil.Error:
            processes = []
        for proc in processes:
            try:
                if proc.pid not in self.kinds:
                    self.kinds[proc.pid] = process_kind(proc)
                t = proc.cpu_times()
                totals[self.kinds[proc.pid]] += t.user + t.system
            except psutil.Error:
                continue
        return totals


class Ledger:
    """CPU seconds by (phase, kind), summed over the measured attempts."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.by_phase: dict[tuple[str, str], float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.attempts = 0
        self.recording = False
        self._last: dict[str, float] = {}
        self._last_wall = 0.0

    def start(self) -> None:
        self._last = self.tree.cpu()
        self._last_wall = time.perf_counter()

    def phase(self, name: str) -> None:
        now = self.tree.cpu()
        if self.recording:
            for kind, seconds in now.items():
                delta = seconds - self._last.get(kind, 0.0)
                if delta > 0:
                    self.by_phase[(name, kind)] += delta
            self.wall[name] += time.perf_counter() - self._last_wall
        self._last = now
        self._last_wall = time.perf_counter()


# --- one attempt --------------------------------------------------------------------------------


def fetch_report(client: MoodleClient) -> AttemptReport:
    data = client.call("quiz_archiver_generate_attempt_report", {"attemptid": 10})
    return AttemptReport.model_validate({k: data.get(k) for k in AttemptReport.model_fields})


async def one_attempt(
    approach: Approach, renderer: Renderer, ledger: Ledger, client: MoodleClient, origin: str,
    work: Path, n: int,
) -> None:  # fmt: skip
    ledger.start()
    report = fetch_report(client)
    ledger.phase("fetch")
    folder = work / f"attempt-{n}"
    folder.mkdir()
    pdf = folder / "report.pdf"
    await renderer.render_pdf(report.report, origin, pdf, PaperFormat.A4)
    ledger.phase("context wipe")
    approach.pdfa(pdf, n)
    ledger.phase("PDF/A")
    writer = ArchiveWriter(work / f"archive-{n}.zip")
    writer.add_file(f"attempts/{report.filename}.pdf", pdf)
    writer.close()
    ledger.phase("ZIP")
    if ledger.recording:
        ledger.attempts += 1


async def profile(
    approaches: list[Approach], origin: str, attempts: int, warm_up: int, work: Path
) -> dict[str, Ledger]:
    ledgers: dict[str, Ledger] = {}
    renderers: dict[str, Renderer] = {}
    endpoints = MoodleEndpoints(base_url=origin, ws_url=origin + WS_PATH, upload_url=origin)
    client = MoodleClient(endpoints, "f" * 32)
    try:
        for approach in approaches:
            before = {p.pid for p in psutil.Process().children()}
            holder: list[Ledger] = []
            renderer = Renderer(
                settings(),
                extra_browser_args=LOOPBACK_ONLY + approach.chromium_args,
                on_phase=lambda name, h=holder: (
                    h[0].phase(_RENDER_PHASES[name]) if name in _RENDER_PHASES else None
                ),
            )
            await renderer.__aenter__()
            renderers[approach.name] = renderer
            driver = next(p.pid for p in psutil.Process().children() if p.pid not in before)
            holder.append(Ledger(Tree(driver)))
            ledgers[approach.name] = holder[0]
        for n in range(warm_up + attempts):
            for approach in approaches:
                ledger = ledgers[approach.name]
                ledger.recording = n >= warm_up
                target = work / approach.name
                target.mkdir(exist_ok=True)
                await one_attempt(
                    approach, renderers[approach.name], ledger, client, origin, target, n
                )
    finally:
        client.close()
        for renderer in renderers.values():
            await renderer.__aexit__(None, None, None)
    return ledgers


# --- report -------------------------------------------------------------------------------------


def report(ledgers: dict[str, Ledger]) -> None:
    names = list(ledgers)
    kinds = sorted({k for ledger in ledgers.values() for (_, k) in ledger.by_phase})
    width = 12

    def per_attempt(ledger: Ledger, phase: str | None, kind: str | None) -> float:
        total = sum(
            s
            for (p, k), s in ledger.by_phase.items()
            if (phase is None or p == phase) and (kind is None or k == kind)
        )
        return total / max(1, ledger.attempts)

    header = "".join(f"{n:>{width}}" for n in names)
    print(f"\nCPU-seconds per attempt by phase{'':>17}{header}")
    for phase in PHASES:
        row = "".join(f"{per_attempt(ledgers[n], phase, None):>{width}.3f}" for n in names)
        print(f"  {phase:<46}{row}")
        for kind in kinds:
            values = [per_attempt(ledgers[n], phase, kind) for n in names]
            if max(values) >= 0.005:
                print(f"    {kind:<44}" + "".join(f"{v:>{width}.3f}" for v in values))
    print(f"\nCPU-seconds per attempt by kind of process{'':>7}{header}")
    for kind in kinds:
        values = [per_attempt(ledgers[n], None, kind) for n in names]
        print(f"  {kind:<46}" + "".join(f"{v:>{width}.3f}" for v in values))
    totals = [per_attempt(ledgers[n], None, None) for n in names]
    print(f"  {'total':<46}" + "".join(f"{v:>{width}.3f}" for v in totals))
    walls = [sum(ledgers[n].wall.values()) / max(1, ledgers[n].attempts) for n in names]
    print(f"  {'wall seconds per attempt (one at a time)':<46}"
          + "".join(f"{v:>{width}.2f}" for v in walls))  # fmt: skip
    print(f"(load average {os.getloadavg()[0]:.1f}; {ledgers[names[0]].attempts} attempts each)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument(
        "--approach", action="append", default=[], metavar="NAME=CHROMIUM ARGS",
        help="compare these instead (extra Chromium arguments; repeatable)",
    )  # fmt: skip
    parser.add_argument("--theme", choices=THEMES, default="stand-in",
                        help="the sample's theme CSS (bench/boost_theme.py)")  # fmt: skip
    args = parser.parse_args()
    approaches = [
        Approach(name, tuple(extra.split()))
        for name, _, extra in (a.partition("=") for a in args.approach)
    ] or list(APPROACHES)
    print("Approaches: " + "; ".join(
        f"{a.name}: Chromium {' '.join(a.chromium_args) or 'as launched by chromium.py'}"
        for a in approaches
    ))  # fmt: skip
    print(f"Theme: {args.theme}")
    with loopback_server(args.theme) as origin, tempfile.TemporaryDirectory() as scratch:
        ledgers = asyncio.run(
            profile(approaches, origin, args.attempts, args.warm_up, Path(scratch))
        )
        report(ledgers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
