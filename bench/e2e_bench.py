"""Benchmark: N tasks of M attempts through the whole product on the real node.

Starts a local control plane, the real node (kubelet + containerd) and the Helm release, a fake
Moodle with N quizzes of M attempts (formulas included), posts all N tasks to the gateway at
once like the plugin, and waits until every ArchiveJob is final and Moodle holds every archive.

Prints, as JSON: attempts per second end to end (first POST -> last archive accepted), the
time to first pod start (queue + Job + pod + image already on the node), per-task durations,
and the most pods running at once. Images are built first if needed (not timed).

    .venv/bin/python bench/e2e_bench.py --tasks 4 --attempts 10 [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.fakemoodle import FakeMoodle  # noqa: E402
from tests.support.localcluster import LocalCluster  # noqa: E402
from tests.support.nodestack import FINAL_PHASES, NodeStack, StackOptions  # noqa: E402


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run(tasks: int, attempts: int, parallel: int, report_latency: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", nodes=0)
        cluster.start()
        try:
            with FakeMoodle(report_latency=report_latency) as moodle:
                options = StackOptions(max_parallel_jobs=parallel, queue_size=max(8, tasks))
                stack = NodeStack(
                    cluster,
                    Path(tmp),
                    [moodle.base_url],
                    options,
                    log=lambda m: print(m, file=sys.stderr),
                )
                stack.start()
                try:
                    return _measure(stack, moodle, tasks, attempts, parallel, report_latency)
                finally:
                    stack.stop()
        finally:
            cluster.stop(remove_data=True)


def _measure(
    stack: NodeStack,
    moodle: FakeMoodle,
    tasks: int,
    attempts: int,
    parallel: int,
    report_latency: float,
) -> dict[str, Any]:
    jobs = []
    for i in range(tasks):
        quiz = moodle.create_quiz(attempts=attempts, with_formulas=True, name=f"Bench {i}")
        jobs.append(moodle.create_job(quiz, backups=()))
    began = time.time()
    job_ids = []
    for job in jobs:
        result = moodle.submit_job(job, stack.gateway_url)
        if not result.ok:
            raise SystemExit(f"the gateway refused a task: {result.http_status} {result.message}")
        job_ids.append(str(result.data["jobid"]))
    posted = time.time() - began
    running_peak = 0
    finals: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 600 + 60 * tasks * attempts / max(1, parallel)
    while len(finals) < len(job_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; {len(finals)} of {tasks} final\n{stack.diagnose()}")
        running = 0
        for job_id in job_ids:
            if job_id in finals:
                continue
            obj = stack.archivejob(job_id) or {}
            status = obj.get("status") or {}
            if status.get("phase") in FINAL_PHASES:
                finals[job_id] = obj
            elif status.get("phase") in ("Running", "Finalizing", "WaitingForBackup"):
                running += 1
        running_peak = max(running_peak, running)
        time.sleep(0.25)
    done_at = max(_artifact_time(moodle, j) for j in job_ids)
    elapsed = done_at - began
    phases = [o["status"]["phase"] for o in finals.values()]
    durations, waits = [], []
    for obj in finals.values():
        status = obj["status"]
        start, end = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
        created = _parse_time(obj["metadata"]["creationTimestamp"])
        if start and end:
            durations.append(end - start)
        if start and created:
            waits.append(start - created)
    stored = sum(1 for j in job_ids if moodle.job(j).artifact is not None)
    return {
        "tasks": tasks,
        "attempts_per_task": attempts,
        "max_parallel_jobs": parallel,
        "report_latency_s": report_latency,
        "phases": {p: phases.count(p) for p in sorted(set(phases))},
        "archives_stored": stored,
        "posting_s": round(posted, 2),
        "elapsed_s": round(elapsed, 1),
        "attempts_per_s": round(tasks * attempts / elapsed, 3),
        "task_run_s_median": round(statistics.median(durations), 1) if durations else None,
        "task_run_s_max": round(max(durations), 1) if durations else None,
        "created_to_started_s_median": round(statistics.median(waits), 1) if waits else None,
        "running_at_once_max": running_peak,
    }


def _artifact_time(moodle: FakeMoodle, job_id: str) -> float:
    """When Moodle accepted the archive: the last call of the job (process_uploaded_artifact)."""
    calls = moodle.calls_for(job_id)
    return max(c.time for c in calls) if calls else time.time()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=2, help="maxParallelJobs")
    parser.add_argument(
        "--report-latency",
        type=float,
        default=0.2,
        help="seconds the fake Moodle takes per attempt report",
    )
    args = parser.parse_args()
    result = run(args.tasks, args.attempts, args.parallel, args.report_latency)
    print(json.dumps(result, indent=2))
    return 0 if result["archives_stored"] == args.tasks else 1


if __name__ == "__main__":
    sys.exit(main())
