"""Resume and shard benchmark: what a killed runner costs, and what shards bring on this machine.

Real `moodle-archiver run-job` processes (this checkout's code, Chromium included) against the
fake Moodle in this process, default settings otherwise (PDF/A on unless --no-pdfa):

1. undisturbed: one process, N attempts;
2. killed at 50 %: SIGKILL of the runner once half the attempts are checkpointed, then a new
   runner over the same work directory (the time is first start to second exit, the restart's
   start-up included); the attempts rendered twice are counted from the fake Moodle's report
   calls (goal: total <= 1.3x undisturbed). Undisturbed and killed runs alternate (--repeat),
   each killed run compared with the run just before it, since the machine's load drifts;
3. shards: 1, 2 and 4 processes started together with --shards K over one work directory
   (the time is first start to last exit).

Wall times follow the machine's load (printed); CPU-seconds per attempt of the runner trees
(sampled, bench/_measure.py) do not, and tell whether shards cost more work.

    .venv/bin/python bench/resume_bench.py [--attempts 80] [--latency 0.2] [--shards 1,2,4]
        [--no-pdfa] [--skip-resume] [--repeat 2] [--concurrency N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import TreeMemorySampler  # noqa: E402
from tests.fakemoodle import FakeMoodle  # noqa: E402
from tests.runner.procs import CliJob, finish, kill_tree, runner_env, wait_for  # noqa: E402

TEST_OVERRIDES = ("QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY", "QUIZ_ARCHIVER_MOODLE_RETRIES",
                  "QUIZ_ARCHIVER_MOODLE_RETRY_BACKOFF_SEC",
                  "QUIZ_ARCHIVER_STATUS_REPORTING_INTERVAL_SEC")
OPTIONS: dict[str, str] = {}


@dataclass
class Measure:
    cpu_per_attempt: float  # sampled every 0.25 s: the last moments of each process are missed
    peak_mib: float  # the sum of each tree's peak (PSS)


def _env(cli: CliJob) -> dict[str, str]:
    """The runner's defaults, except what the command line sets."""
    env = runner_env(cli.work)
    for name in TEST_OVERRIDES:
        env.pop(name, None)
    env.update(OPTIONS)
    return env


def _new_job(moodle: FakeMoodle, attempts: int, tmp: Path) -> CliJob:
    quiz = moodle.create_quiz(attempts=attempts, with_formulas=True)
    job = moodle.create_job(quiz, timeout_min=600)
    return CliJob.create(moodle, job, tmp)


def _check(cli: CliJob, results: list[tuple[int, str]]) -> None:
    for rc, err in results:
        if rc != 0:
            raise SystemExit(f"run failed (exit {rc}):\n{err[-3000:]}")
    if cli.moodle.job(cli.jobid).status_name != "FINISHED":
        raise SystemExit("Moodle did not accept the archive")


@dataclass
class Resumed:
    seconds: float  # first start to the second runner's exit
    rendered_twice: int  # report calls beyond one per attempt
    gap: float  # from the kill to the restarted runner's first checkpoint
    interval: float  # median time between checkpoints before the kill
    cpu_per_attempt: float  # both runner trees (sampled)


def killed_at_half(moodle: FakeMoodle, attempts: int, tmp: Path) -> Resumed:
    cli = _new_job(moodle, attempts, tmp)
    env = _env(cli)
    started = time.monotonic()
    first = cli.start(env=env)
    stack = ExitStack()
    samplers = [stack.enter_context(TreeMemorySampler(first.pid, 0.25))]
    seen: list[float] = []

    def half_done() -> bool:
        lines = cli.manifest_lines()
        while len(seen) < lines:
            seen.append(time.monotonic())
        return lines >= attempts // 2

    wait_for(half_done, first, timeout=3600)
    kill_tree(first)
    killed_at = time.monotonic()
    second = cli.start(env=env)
    samplers.append(stack.enter_context(TreeMemorySampler(second.pid, 0.25)))
    wait_for(lambda: cli.manifest_lines() > len(seen), second, timeout=3600)
    gap = time.monotonic() - killed_at
    with stack:
        results = [finish(second, timeout=3600)]
    seconds = time.monotonic() - started
    _check(cli, results)
    steps = sorted(b - a for a, b in pairwise(seen))
    cpu = sum(sum(s.cpu_by_kind().values()) for s in samplers)
    return Resumed(seconds, sum(cli.report_calls().values()) - attempts, gap,
                   steps[len(steps) // 2] if steps else 0.0, cpu / attempts)


def sharded(moodle: FakeMoodle, attempts: int, tmp: Path, shards: int) -> tuple[float, Measure]:
    """Wall seconds, CPU seconds and peak memory of the runner trees (one shard: the
    undisturbed run)."""
    cli = _new_job(moodle, attempts, tmp)
    env = _env(cli)
    started = time.monotonic()
    procs = [cli.start("--shards", str(shards), "--shard-index", str(i), env=env)
             for i in range(shards)]
    with ExitStack() as stack:
        samplers = [stack.enter_context(TreeMemorySampler(p.pid, 0.25)) for p in procs]
        results = [finish(p, timeout=3600) for p in procs]
    seconds = time.monotonic() - started
    _check(cli, results)
    if set(cli.report_calls().values()) != {1}:
        raise SystemExit("an attempt was rendered more than once")
    cpu = sum(sum(s.cpu_by_kind().values()) for s in samplers)
    return seconds, Measure(cpu / attempts, sum(s.peak_bytes for s in samplers) / 2**20)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=80)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--shards", default="1,2,4", help='e.g. "2,4"; "" for none')
    parser.add_argument("--no-pdfa", action="store_true")
    parser.add_argument("--skip-resume", action="store_true")
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternating undisturbed/killed pairs (the load drifts)")
    parser.add_argument("--concurrency", type=int, help="instead of the runner's default")
    args = parser.parse_args()
    pdfa = not args.no_pdfa
    OPTIONS["QUIZ_ARCHIVER_PDFA_CONVERSION"] = "true" if pdfa else "false"
    if args.concurrency:
        OPTIONS["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] = str(args.concurrency)
    n = args.attempts

    print(f"{n} attempts, report latency {args.latency} s, PDF/A {'on' if pdfa else 'off'}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    with FakeMoodle(report_latency=args.latency) as moodle, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        alone = 0.0
        for round_ in range(1 if args.skip_resume else args.repeat):
            alone, m = sharded(moodle, n, base / f"undisturbed-{round_}", 1)
            print(f"{'undisturbed':>16}: {alone:6.1f} s ({n / alone:.2f} attempts/s), "
                  f"{m.cpu_per_attempt:.2f} CPU-s/attempt, peak {m.peak_mib:.0f} MiB; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            if args.skip_resume:
                break
            r = killed_at_half(moodle, n, base / f"killed-{round_}")
            ratios.append(r.seconds / alone)
            cpu_ratios.append(r.cpu_per_attempt / m.cpu_per_attempt)
            print(f"{'killed at 50 %':>16}: {r.seconds:6.1f} s = {ratios[-1]:.2f}x the run "
                  f"before (goal <= 1.3x), {r.cpu_per_attempt:.2f} CPU-s/attempt = "
                  f"{cpu_ratios[-1]:.2f}x; {r.rendered_twice} attempts rendered twice; "
                  f"restart to first checkpoint {r.gap:.1f} s (one checkpoint every "
                  f"{r.interval:.1f} s before); load average {os.getloadavg()[0]:.1f}",
                  flush=True)
        if ratios:
            print(f"{'resume':>16}: mean {sum(ratios) / len(ratios):.2f}x the undisturbed "
                  f"time, {sum(cpu_ratios) / len(cpu_ratios):.2f}x its CPU, over "
                  f"{len(ratios)} alternating pair(s)", flush=True)
        for k in (int(s) for s in args.shards.split(",") if s):
            seconds, m = sharded(moodle, n, base / f"shards-{k}", k)
            print(f"{f'{k} shard(s)':>16}: {seconds:6.1f} s = {n / seconds:.2f} attempts/s, "
                  f"{seconds / alone:.2f}x undisturbed, {m.cpu_per_attempt:.2f} CPU-s/attempt, "
                  f"peak {m.peak_mib:.0f} MiB; load average {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
