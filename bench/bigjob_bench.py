"""Benchmark: one big job through the whole product on the real node, with a work volume.

Starts a local control plane, the real node (kubelet + containerd + local-path-provisioner)
and the Helm release with work volumes of class `local-path`, and a fake Moodle. Then, one
job at a time, a quiz of N attempts:

* `undisturbed`: one pod, nothing happens to it;
* `killed`: one pod, force-deleted when half the attempts are done; the replacement resumes
  from the volume's checkpoints (the issue's goal: at most 1.3x the undisturbed time);
* `shards-K` for each K of `--shards`: one Indexed Job of K pods over the same volume (on
  this machine all on one node, so they share its CPUs).

Prints, as JSON per run: seconds from the ArchiveJob's creation to Moodle's acceptance of the
archive, attempts per second, report calls Moodle served (more than N: attempts rendered
twice), the pods used; and the ratios killed/undisturbed and shards-K/shards-1. Images are
built first if needed (not timed).

    .venv/bin/python bench/bigjob_bench.py [--attempts 200] [--shards 1 2 4] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.fakemoodle import FakeMoodle  # noqa: E402
from tests.support.localcluster import LocalCluster  # noqa: E402
from tests.support.localpath import STORAGE_CLASS  # noqa: E402
from tests.support.nodestack import NodeStack, StackOptions  # noqa: E402

REPORT = "quiz_archiver_generate_attempt_report"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def one_job(
    stack: NodeStack, moodle: FakeMoodle, attempts: int, shards: int, kill_at: float | None
) -> dict[str, Any]:
    quiz = moodle.create_quiz(attempts=attempts, with_formulas=False, attachments_per_attempt=0)
    job = moodle.create_job(quiz)
    began = time.monotonic()
    job_id = stack.create_archivejob(
        job, moodle, maxShards=shards, attemptsPerShard=max(1, -(-attempts // shards))
    )
    killed_after = None
    while True:
        status = (stack.archivejob(job_id) or {}).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed", "TimedOut", "Cancelled"):
            break
        done = status.get("attemptsDone") or 0
        if kill_at is not None and killed_after is None and done >= kill_at * attempts:
            for pod in stack.job_pods(job_id):
                if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
                    continue
                stack.core.delete_namespaced_pod(
                    pod.metadata.name, stack.jobs_namespace, grace_period_seconds=0
                )
            killed_after = round(time.monotonic() - began, 1)
        if time.monotonic() - began > 3600:
            raise SystemExit(f"{job_id} not final after an hour\n{stack.diagnose()}")
        time.sleep(0.2)
    state = moodle.job(job_id)
    calls = moodle.calls_for(job_id)
    accepted = max(c.time for c in calls)
    first = min(c.time for c in calls)
    reports = Counter(int(c.params["attemptid"]) for c in calls if c.wsfunction == REPORT)
    elapsed = time.monotonic() - began
    return {
        "phase": status.get("phase"),
        "archive_stored": state.artifact is not None,
        "shards": status.get("shardCount"),
        "killed_after_s": killed_after,
        "elapsed_s": round(elapsed, 1),
        "first_to_last_moodle_call_s": round(accepted - first, 1),
        "attempts_per_s": round(attempts / elapsed, 3),
        "report_calls": sum(reports.values()),
        "attempts_rendered_twice": sum(1 for n in reports.values() if n > 1),
        "attempts_resumed": status.get("attemptsResumed"),
        "pods": len(stack.job_pods(job_id)),
    }


def run(attempts: int, shard_counts: list[int], concurrency: int, latency: float) -> dict:
    results: dict[str, Any] = {"attempts": attempts, "attempt_concurrency": concurrency,
                               "report_latency_s": latency}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bigjob-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", nodes=0)
        cluster.start()
        try:
            with FakeMoodle(report_latency=latency) as moodle:
                options = StackOptions(
                    max_parallel_jobs=1,
                    backoff_limit=2,
                    timeout_seconds=3600,
                    runner_env={"QUIZ_ARCHIVER_PDFA_CONVERSION": "false"},
                    attempt_concurrency=concurrency,
                    work_volume_class=STORAGE_CLASS,
                    shards_max=max(shard_counts),
                )
                stack = NodeStack(cluster, Path(tmp), [moodle.base_url], options, log=say)
                stack.start()
                try:
                    plan = [("undisturbed", 1, None), ("killed", 1, 0.5)]
                    plan += [(f"shards-{k}", k, None) for k in shard_counts if k != 1]
                    for name, shards, kill_at in plan:
                        say(f"bench: {name}")
                        results[name] = one_job(stack, moodle, attempts, shards, kill_at)
                        say(f"bench: {name}: {json.dumps(results[name])}")
                finally:
                    stack.stop()
        finally:
            cluster.stop(remove_data=True)
    base = results["undisturbed"]["elapsed_s"]
    results["killed_vs_undisturbed"] = round(results["killed"]["elapsed_s"] / base, 2)
    for k in shard_counts:
        if k != 1:
            results[f"shards-{k}_vs_1"] = round(results[f"shards-{k}"]["elapsed_s"] / base, 2)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=2, help="attempts in flight per pod")
    parser.add_argument("--report-latency", type=float, default=0.1,
                        help="seconds the fake Moodle takes per attempt report")  # fmt: skip
    args = parser.parse_args()
    result = run(args.attempts, args.shards, args.concurrency, args.report_latency)
    print(json.dumps(result, indent=2))
    ok = all(v.get("archive_stored") for v in result.values() if isinstance(v, dict))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
