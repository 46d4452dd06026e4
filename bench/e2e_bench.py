"""Benchmark: N tasks of M attempts through the whole product on the real node.

Starts a local control plane, the real node (kubelet + containerd) and the Helm release, a fake
Moodle with N quizzes of M attempts (formulas included), posts all N tasks to the gateway at
once like the plugin, and waits until every ArchiveJob is final and Moodle holds every archive.

Before that, in the same run, the same N tasks go through the job runner alone
(`moodle-archiver run-job` as local processes, `--parallel` at a time, same fake Moodle, same
settings): the baseline that makes the cost of the Kubernetes path visible.

Prints, as JSON: attempts per second end to end (first POST -> last archive accepted) next to
the baseline's, their ratio, the time to first pod start (queue + Job + pod + image already on
the node), per-task durations, and the most pods running at once. Images are built first if
needed (not timed).

    .venv/bin/python bench/e2e_bench.py --tasks 4 --attempts 10 [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
        with FakeMoodle(report_latency=report_latency) as moodle:
            baseline = _runner_alone(moodle, Path(tmp) / "local", tasks, attempts, parallel)
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
                    result = _measure(stack, moodle, tasks, attempts, parallel, report_latency)
                finally:
                    stack.stop()
        finally:
            cluster.stop(remove_data=True)
    result["runner_alone"] = baseline
    result["kubernetes_vs_runner_alone"] = round(
        result["attempts_per_s"] / baseline["attempts_per_s"], 2
    )
    return result


def _runner_alone(
    moodle: FakeMoodle, work: Path, tasks: int, attempts: int, parallel: int
) -> dict[str, Any]:
    """The same tasks through `moodle-archiver run-job` processes, `parallel` at a time."""
    work.mkdir(parents=True)
    runs = []
    for i in range(tasks):
        quiz = moodle.create_quiz(attempts=attempts, with_formulas=True, name=f"Local {i}")
        job = moodle.create_job(quiz, backups=())
        job_id = str(uuid.uuid4())
        moodle.register_job(job, job_id)
        request = work / f"request-{i}.json"
        request.write_text(json.dumps(job.request_body))
        runs.append((job_id, request, work / f"scratch-{i}"))

    def one(job_id: str, request: Path, scratch: Path) -> float:
        scratch.mkdir()
        started = time.monotonic()
        done = subprocess.run(
            [str(REPO_ROOT / ".venv/bin/moodle-archiver"), "run-job", "--request", str(request),
             "--job-id", job_id, "--log-format", "json"],
            env={**os.environ, "QUIZ_ARCHIVER_WORK_DIR": str(scratch)},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0 or moodle.job(job_id).status_name != "FINISHED":
            tail = done.stderr[-2000:]
            raise SystemExit(f"the runner alone failed (exit {done.returncode}):\n{tail}")
        return time.monotonic() - started

    began = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        durations = list(pool.map(lambda run: one(*run), runs))
    elapsed = time.monotonic() - began
    return {
        "elapsed_s": round(elapsed, 1),
        "attempts_per_s": round(tasks * attempts / elapsed, 3),
        "task_run_s_median": round(statistics.median(durations), 1),
    }


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
