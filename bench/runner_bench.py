"""Runner benchmark: 50 attempts, 0.5 s report latency, concurrency 1 vs the default.

Both runs use the real `moodle-archiver run-job` process (Chromium included) against
the fake Moodle in this process, with default settings otherwise (PDF/A on). Prints
attempts per second for both, their ratio, and the peak memory (PSS) of the runner
process tree.

    .venv/bin/python bench/runner_bench.py [--attempts 50] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._measure import run_measured  # noqa: E402
from moodle_archive_job.settings import RunnerSettings  # noqa: E402
from tests.fakemoodle import FakeMoodle  # noqa: E402


def run_once(moodle: FakeMoodle, attempts: int, concurrency: int | None) -> tuple[float, int]:
    quiz = moodle.create_quiz(attempts=attempts, with_formulas=True)
    job = moodle.create_job(quiz, timeout_min=600)
    jobid = str(uuid.uuid4())
    moodle.register_job(job, jobid)
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps(job.request_body))
        env = {**os.environ, "QUIZ_ARCHIVER_WORK_DIR": tmp}
        if concurrency is not None:
            env["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] = str(concurrency)
        code, seconds, peak, err = run_measured(
            [str(REPO / ".venv/bin/moodle-archiver"), "run-job", "--request", str(request),
             "--job-id", jobid, "--log-format", "json"],
            env,
        )
    if code != 0 or moodle.job(jobid).status_name != "FINISHED":
        raise SystemExit(f"run failed (exit {code}):\n{err}")
    return seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()
    default = RunnerSettings().attempt_concurrency
    results = {}
    with FakeMoodle(report_latency=args.latency) as moodle:
        for label, concurrency in (("concurrency 1", 1), (f"default ({default})", None)):
            seconds, peak = run_once(moodle, args.attempts, concurrency)
            results[label] = (seconds, peak)
            print(f"{label:>16}: {args.attempts} attempts in {seconds:6.1f} s = "
                  f"{args.attempts / seconds:5.2f} attempts/s, peak memory "
                  f"{peak / 2**20:6.0f} MiB", flush=True)
    (base_s, _), (fast_s, fast_peak) = results.values()
    print(f"speed-up of the default over concurrency 1: {base_s / fast_s:.2f}x; "
          f"report latency {args.latency} s; peak memory at the default "
          f"{fast_peak / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
