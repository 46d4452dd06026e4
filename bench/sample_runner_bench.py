"""The whole runner (`moodle-archiver run-job`, Chromium, Ghostscript) on the real Moodle 5.0
attempt report, PDF/A on, at the default concurrency: CPU-seconds per attempt by kind of
process and peak memory (PSS) of the runner's process tree, for this checkout next to a
previous revision (--baseline), in the same run.

The fake Moodle answers every report call with the real sample page (tests/fixtures/moodle-5.0,
moved to a loopback server in a child process that serves the Moodle stand-ins of the
browser tests and MathJax 3 with a CDN's Cache-Control). The baseline runs from a temporary
git worktree of REV with the same Python environment. The two runs alternate (baseline,
current, baseline, ...) with --rounds > 1, so both see the same machine load. The theme
CSS is a one-rule stand-in unless --theme bootstrap (Bootstrap 5.3 and Font Awesome 6 from
npm, the size of a real Boost theme: bench/boost_theme.py).

    .venv/bin/python bench/sample_runner_bench.py [--attempts 100] [--baseline REV]
        [--rounds 1] [--concurrency N] [--theme stand-in|bootstrap]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import Measured  # noqa: E402
from bench.attempt_profile import loopback_server  # noqa: E402
from bench.boost_theme import THEMES  # noqa: E402
from bench.runner_bench import FAKE_MOODLE, run_once  # noqa: E402
from tests.browser.moodle_sample import sample_html  # noqa: E402
from tests.fakemoodle import FakeMoodle, ws_functions  # noqa: E402

PDFA_ON = {"QUIZ_ARCHIVER_PDFA_CONVERSION": "true"}


@contextmanager
def baseline_checkout(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree),
                        rev], check=True)  # fmt: skip
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=100)
    parser.add_argument("--baseline", help="git revision of the previous approach")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, help="instead of the default")
    parser.add_argument("--theme", choices=THEMES, default="stand-in",
                        help="the sample's theme CSS (bench/boost_theme.py)")  # fmt: skip
    args = parser.parse_args()

    results: dict[str, list[Measured]] = defaultdict(list)
    with loopback_server(args.theme) as origin, FakeMoodle(report_latency=0.0) as moodle:
        html = sample_html(origin)
        ws_functions.render_report = lambda *_args, **_kwargs: html  # type: ignore[assignment]
        with _checkouts(args.baseline) as checkouts:
            for _ in range(args.rounds):
                for label, checkout in checkouts.items():
                    m = run_once(moodle, args.attempts, args.concurrency, checkout, PDFA_ON)
                    m.cpu_by_kind.pop(FAKE_MOODLE)  # not the runner's
                    results[label].append(m)
                    top = sorted(m.cpu_by_kind.items(), key=lambda item: -item[1])[:5]
                    print(f"  {label}: {args.attempts} attempts in {m.seconds:.1f} s, "
                          f"{m.cpu_seconds / args.attempts:.3f} CPU-s/attempt ("
                          + ", ".join(f"{k} {v / args.attempts:.3f}" for k, v in top)
                          + f"), peak {m.peak_bytes / 2**30:.2f} GiB PSS, load average "
                          f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    _report(results, args.attempts)
    print(f"(real Moodle 5.0 sample, theme {args.theme}, PDF/A on, concurrency "
          f"{args.concurrency or 'default'}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0


@contextmanager
def _checkouts(baseline: str | None) -> Iterator[dict[str, Path]]:
    if baseline is None:
        yield {"current": REPO}
        return
    with baseline_checkout(baseline) as tree:
        yield {f"baseline {baseline}": tree, "current": REPO}


def _report(results: dict[str, list[Measured]], attempts: int) -> None:
    labels = list(results)
    width = max(14, *(len(label) + 2 for label in labels))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    rows: dict[str, list[float]] = {}
    kinds = sorted({k for runs in results.values() for m in runs for k in m.cpu_by_kind})
    for kind in kinds:
        rows[kind] = [mean([m.cpu_by_kind.get(kind, 0.0) / attempts for m in results[label]])
                      for label in labels]  # fmt: skip
    print(f"\nCPU-seconds per attempt{'':>21}" + "".join(f"{lb:>{width}}" for lb in labels))
    for kind, values in sorted(rows.items(), key=lambda item: -item[1][-1]):
        print(f"  {kind:<42}" + "".join(f"{v:>{width}.3f}" for v in values))
    stats: dict[str, Any] = {
        "total (runner tree)": [
            mean([m.cpu_seconds / attempts for m in results[lb]]) for lb in labels
        ],
        "peak PSS, GiB": [max(m.peak_bytes for m in results[lb]) / 2**30 for lb in labels],
        "wall seconds per attempt": [
            mean([m.seconds / attempts for m in results[lb]]) for lb in labels
        ],
    }
    for name, values in stats.items():
        print(f"  {name:<42}" + "".join(f"{v:>{width}.3f}" for v in values))


if __name__ == "__main__":
    sys.exit(main())
