"""Runner benchmark: 50 attempts, 0.5 s report latency, concurrency 1 vs the default.

Both runs use the real `moodle-archiver run-job` process (Chromium included) against
the fake Moodle in this process, with default settings otherwise (PDF/A on). Prints
attempts per second for both, their ratio, the peak memory (PSS) of the runner
process tree, and the CPU seconds per attempt: of the runner's whole tree (exact, from
its exit status) by kind of process (sampled), and of the fake Moodle. CPU seconds do
not depend on what else runs on the machine; wall times do (the load average is shown).

    .venv/bin/python bench/runner_bench.py [--attempts 50] [--latency 0.5]
        [--only-default | --only-1] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import Measured, run_measured  # noqa: E402
from moodle_archive_job.settings import RunnerSettings  # noqa: E402
from tests.fakemoodle import FakeMoodle  # noqa: E402

FAKE_MOODLE = "fake Moodle (bench process)"
RUN_JOB = "import sys; from moodle_archive_job.cli import main; sys.exit(main())"


def run_once(
    moodle: FakeMoodle,
    attempts: int,
    concurrency: int | None,
    checkout: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Measured:
    """One job of `attempts` attempts through `moodle-archiver run-job`, measured; its
    cpu_by_kind holds the fake Moodle's CPU time too (FAKE_MOODLE). checkout: run that git
    checkout's runner (its job-image and operator first on PYTHONPATH, this Python) instead
    of this one's installed command; env: added to the runner's environment."""
    quiz = moodle.create_quiz(attempts=attempts, with_formulas=True)
    job = moodle.create_job(quiz, timeout_min=600)
    jobid = str(uuid.uuid4())
    moodle.register_job(job, jobid)
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps(job.request_body))
        run_env = {**os.environ, **(env or {}), "QUIZ_ARCHIVER_WORK_DIR": tmp}
        if concurrency is not None:
            run_env["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] = str(concurrency)
        command = [str(REPO / ".venv/bin/moodle-archiver")]
        if checkout is not None:
            command = [sys.executable, "-c", RUN_JOB]
            run_env["PYTHONPATH"] = os.pathsep.join(
                str(checkout / d) for d in ("job-image", "operator")
            )
        own_before = _own_cpu_seconds()
        measured = run_measured(
            [*command, "run-job", "--request", str(request), "--job-id", jobid,
             "--log-format", "json"],
            run_env,
        )  # fmt: skip
        fake_moodle = _own_cpu_seconds() - own_before - measured.sampler_cpu_seconds
    if measured.exit_code != 0 or moodle.job(jobid).status_name != "FINISHED":
        raise SystemExit(f"run failed (exit {measured.exit_code}):\n{measured.stderr_tail}")
    measured.cpu_by_kind[FAKE_MOODLE] = fake_moodle
    return measured


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(label: str, attempts: int, m: Measured) -> None:
    runner = m.cpu_seconds / attempts
    moodle = m.cpu_by_kind[FAKE_MOODLE] / attempts
    print(f"{label:>16}: {attempts} attempts in {m.seconds:6.1f} s = "
          f"{attempts / m.seconds:5.2f} attempts/s, peak memory {m.peak_bytes / 2**20:6.0f} MiB, "
          f"CPU {runner:.2f} s/attempt (runner tree) + {moodle:.2f} (fake Moodle); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for kind, seconds in sorted(m.cpu_by_kind.items(), key=lambda item: -item[1]):
        print(f"{'':>18}{kind:<40} {seconds / attempts:6.3f} CPU-s/attempt")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.5)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--only-default", action="store_true", help="skip concurrency 1")
    only.add_argument("--only-1", action="store_true", help="skip the default concurrency")
    parser.add_argument("--concurrency", type=int, help="instead of the default")
    args = parser.parse_args()
    default = args.concurrency or RunnerSettings().attempt_concurrency
    runs = [("concurrency 1", 1), (f"default ({default})", args.concurrency)]
    if args.concurrency:
        runs[1] = (f"concurrency {default}", default)
    if args.only_default:
        runs = runs[1:]
    if args.only_1:
        runs = runs[:1]
    results = {}
    with FakeMoodle(report_latency=args.latency) as moodle:
        for label, concurrency in runs:
            results[label] = run_once(moodle, args.attempts, concurrency)
            _report(label, args.attempts, results[label])
    if len(results) == 2:
        base, fast = results.values()
        print(f"speed-up of the default over concurrency 1: {base.seconds / fast.seconds:.2f}x; "
              f"report latency {args.latency} s; peak memory at the default "
              f"{fast.peak_bytes / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
