"""Benchmark: N ArchiveJobs through the operator, KWOK playing the pods.

Measures, with `maxParallelJobs` slots and pods that run for a fixed time:
admission latency (ArchiveJob created -> its Job created, seen by a watch),
refill latency (a Job finished -> the next waiting ArchiveJob's Job created),
end-to-end latency (created -> ArchiveJob Succeeded), throughput, and the most
Jobs active at once (must never exceed the slots).

    .venv/bin/python bench/operator_bench.py                 # starts a local control plane
    .venv/bin/python bench/operator_bench.py --kubeconfig K  # uses a running cluster
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kubernetes import client, config, watch  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from moodle_archive_operator.archivejob import (  # noqa: E402
    GROUP,
    PLURAL,
    VERSION,
    build_archivejob,
    build_token_secret,
    new_job_id,
    spec_from_task,
)
from tests.gateway.crd import install_archivejob_crd  # noqa: E402
from tests.operator.objects import task  # noqa: E402
from tests.operator.operator_process import KWOK, OperatorProcess  # noqa: E402


class Timeline(threading.Thread):
    """Watches Jobs and ArchiveJobs; stamps with this process's monotonic clock."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.job_created: dict[str, float] = {}
        self.job_finished: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.active: set[str] = set()
        self.max_active = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()

    def run(self) -> None:
        threading.Thread(target=self._archivejobs, daemon=True).start()
        self._stream(self.batch.list_namespaced_job, self._job, self.namespace)

    def _stream(self, lister: Any, handle: Any, *args: Any) -> None:
        version = None
        while not self.stop_event.is_set():
            kwargs: dict[str, Any] = {"timeout_seconds": 2}
            if version:
                kwargs["resource_version"] = version
            for event in watch.Watch().stream(lister, *args, **kwargs):
                obj = event["object"]
                meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                version = (
                    meta["resourceVersion"] if isinstance(meta, dict) else (meta.resource_version)
                )
                handle(event["type"], obj)

    def _archivejobs(self) -> None:
        lister = self.custom.list_namespaced_custom_object
        self._stream(lister, self._archivejob, GROUP, VERSION, self.namespace, PLURAL)

    def _job(self, kind: str, job: client.V1Job) -> None:
        now = time.monotonic()
        name = job.metadata.name
        done = any(
            c.type in ("Complete", "Failed") and c.status == "True"
            for c in (job.status.conditions or [])
        )
        with self.lock:
            self.job_created.setdefault(name, now)
            if done or kind == "DELETED":
                if name in self.active:
                    self.job_finished.setdefault(name, now)
                self.active.discard(name)
            else:
                self.active.add(name)
            self.max_active = max(self.max_active, len(self.active))

    def _archivejob(self, kind: str, obj: dict[str, Any]) -> None:
        if (obj.get("status") or {}).get("phase") == "Succeeded":
            with self.lock:
                self.succeeded.setdefault(obj["metadata"]["name"], time.monotonic())


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def bench(
    kubeconfig: Path, jobs: int, slots: int, run_sec: float, work: Path, log_level: str
) -> dict[str, Any]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    install_archivejob_crd(api)
    namespace = f"opbench-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    timeline = Timeline(api, namespace)
    timeline.start()
    created: dict[str, float] = {}
    try:
        with OperatorProcess(
            kubeconfig,
            namespace,
            work / "operator.log",
            MAO_LOG_LEVEL=log_level,
            MAO_MAX_PARALLEL_JOBS=str(slots),
            MAO_JOB_POD_ANNOTATIONS={
                f"{KWOK}/run-duration": f"{int(run_sec * 1000)}ms"
            },
        ):
            began = time.monotonic()
            for _ in range(jobs):
                spec = spec_from_task(task(), new_job_id(), 600)
                aj = custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, build_archivejob(spec, namespace)
                )
                created[aj["metadata"]["name"]] = time.monotonic()
                core.create_namespaced_secret(
                    namespace, build_token_secret(aj, SecretStr("0" * 32), namespace)
                )
            deadline = began + 60 + jobs * (run_sec + 2)
            while len(timeline.succeeded) < jobs and time.monotonic() < deadline:
                time.sleep(0.2)
            wall = time.monotonic() - began
    finally:
        timeline.stop_event.set()
        core.delete_namespace(namespace)
        api.close()
    with timeline.lock:
        job_created = dict(timeline.job_created)
        finished = sorted(timeline.job_finished.values())
        succeeded = dict(timeline.succeeded)
    first_wave = sorted(created, key=created.get)[:slots]
    admission = [job_created[n] - created[n] for n in first_wave if n in job_created]
    later = sorted(t for n, t in job_created.items() if n not in first_wave)
    refill = []
    for start in later:
        before = [f for f in finished if f <= start]
        if before:
            refill.append(start - before[-1])
    return {
        "jobs": jobs,
        "slots": slots,
        "pod_run_sec": run_sec,
        "succeeded": len(succeeded),
        "wall_sec": round(wall, 2),
        "throughput_per_min": round(60 * len(succeeded) / wall, 1),
        "max_active_jobs": timeline.max_active,
        "admission_latency_first_wave": _ms(admission),
        "refill_latency": _ms(refill),
        "end_to_end": _ms([succeeded[n] - created[n] for n in succeeded if n in created]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of a new one")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--run-sec", type=float, default=2.0, help="how long each pod runs")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--keep-logs", type=Path, help="write the operator's log here")
    parser.add_argument("--log-level", default="WARNING", help="the operator's log level")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="operator-bench-")))
        log_dir = args.keep_logs or work
        log_dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = args.kubeconfig
        if kubeconfig is None:
            from tests.support.localcluster import LocalCluster

            cluster = stack.enter_context(LocalCluster(work / "cluster"))
            kubeconfig = cluster.kubeconfig
        result = bench(kubeconfig, args.jobs, args.slots, args.run_sec, log_dir, args.log_level)
    if args.json:
        print(json.dumps(result))
        return 0
    print(json.dumps(result, indent=2))
    print(
        f"{result['succeeded']}/{result['jobs']} succeeded in {result['wall_sec']} s: "
        f"{result['throughput_per_min']} jobs/min with {result['slots']} slots "
        f"(pods run {result['pod_run_sec']} s); at most {result['max_active_jobs']} Jobs active; "
        f"refill p50 {result['refill_latency'].get('p50_ms')} ms"
    )
    return 0 if result["succeeded"] == result["jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
