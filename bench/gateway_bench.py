"""Benchmark: POST /archive against the real API server with a fast fake Moodle.

Measures requests per second and p50/p99 latency at 1 and 16 concurrent clients in one
run (target: p99 < 250 ms at 16). Each request is a full acceptance: validation, the
Moodle probe (fake Moodle, no added latency), the capacity check and its re-check
(from the gateway's watched copy of live ArchiveJobs), the ArchiveJob and its token
Secret created in the API server. The CPU time per request of every process involved
is printed too (the machine may be busy: these are the figures to compare); `total`
adds them up, `bench` is this process (the clients and the finisher). A "finisher"
thread deletes accepted ArchiveJobs as they appear, standing in for the operator
finishing jobs, so the queue stays small as it would in production. The fake Moodle
runs in its own process.

    .venv/bin/python bench/gateway_bench.py                 # starts a local control plane
    .venv/bin/python bench/gateway_bench.py --kubeconfig K  # uses a running cluster
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import psutil  # noqa: E402
import requests  # noqa: E402
from kubernetes import client, config  # noqa: E402

from tests.gateway.crd import install_archivejob_crd  # noqa: E402
from tests.gateway.server import GatewayProcess, free_port  # noqa: E402

GROUP, VERSION, PLURAL = "moodlearchiver.io", "v1alpha1", "archivejobs"


class Finisher(threading.Thread):
    """Deletes ArchiveJobs as they appear (jobs finishing); tracks the most seen at once."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.stop_event = threading.Event()
        self.max_live = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            with suppress(client.ApiException):
                deleted = self.custom.delete_collection_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
                self.max_live = max(self.max_live, len(deleted.get("items") or []))
            self.stop_event.wait(0.01)


@contextmanager
def fake_moodle_process(work: Path) -> Iterator[tuple[str, bytes, int]]:
    """The fake Moodle in its own process (not competing with the clients for the GIL)."""
    port = free_port()
    body_file = work / "body.json"
    with (work / "fakemoodle.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakemoodle", "--port", str(port), "--no-formulas",
             "--body-file", str(body_file)],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not body_file.exists() or not body_file.read_text().strip().endswith("}"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake Moodle did not start")
            time.sleep(0.1)
        body = json.loads(body_file.read_text())
        yield f"http://127.0.0.1:{port}", json.dumps(body).encode(), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    used = {}
    for name, pid in pids.items():
        with suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            used[name] = times.user + times.system
    return used


def run_level(
    url: str, bodies: list[bytes], concurrency: int, total: int, pids: dict[str, int]
) -> dict[str, Any]:
    local = threading.local()
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def worker() -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            body = bodies[index % len(bodies)]
            started = time.perf_counter()
            response = session.post(
                f"{url}/archive",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    cpu_before = cpu_seconds(pids)
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - began
    cpu_after = cpu_seconds(pids)
    per_request = {
        name: round(1000 * (cpu_after[name] - cpu_before[name]) / total, 1)
        for name in cpu_after
        if name in cpu_before
    }
    per_request["total"] = round(sum(per_request.values()), 1)
    return {
        "concurrency": concurrency,
        "requests": total,
        "statuses": statuses,
        "rps": round(total / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies), 1),
        # CPU time each process spent per request (independent of how busy the machine is).
        "cpu_ms_per_request": per_request,
    }


def _metric_sum_count(text: str, name: str) -> tuple[float, float]:
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def _metric_value(text: str, sample: str) -> float:
    lines = text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(sample))


def bench(
    kubeconfig: Path,
    levels: list[int],
    requests_per_level: int,
    work: Path,
    cluster_pids: dict[str, int],
) -> dict[str, Any]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    install_archivejob_crd(api)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    finisher = Finisher(api, namespace)
    try:
        with fake_moodle_process(work) as (moodle_url, body, moodle_pid), GatewayProcess(
            kubeconfig,
            namespace,
            moodle_url,
            work / "gateway.log",
            MAO_LOG_LEVEL="WARNING",
            MAO_QUEUE_SIZE="500",
        ) as gateway:
            bodies = [body]
            finisher.start()
            pids = {
                "gateway": gateway.pid,
                **cluster_pids,
                "fake-moodle": moodle_pid,
                "bench": os.getpid(),
            }
            run_level(gateway.url, bodies, 4, 40, pids)  # warm-up: connections, caches
            results = [
                run_level(gateway.url, bodies, level, requests_per_level, pids)
                for level in levels
            ]
            metrics = requests.get(f"{gateway.url}/metrics", timeout=5).text
            probe_sum, probe_count = _metric_sum_count(
                metrics, "moodle_archiver_gateway_moodle_probe_duration_seconds"
            )
            rechecks = {
                source: _metric_value(
                    metrics, f'moodle_archiver_gateway_capacity_rechecks_total{{source="{source}"}}'
                )
                for source in ("watch", "list")
            }
    finally:
        finisher.stop_event.set()
        if finisher.is_alive():
            finisher.join(5)
        core.delete_namespace(namespace)
        api.close()
    return {
        "levels": results,
        "mean_probe_ms": round(1000 * probe_sum / probe_count, 1) if probe_count else None,
        "max_live_archivejobs": finisher.max_live,
        # where the capacity re-checks counted: the watched copy, or a list (it lagged)
        "rechecks": rechecks,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of a new one")
    parser.add_argument("--requests", type=int, default=400, help="requests per level")
    parser.add_argument("--levels", default="1,16", help="client concurrency levels")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-bench-")))
        kubeconfig = args.kubeconfig
        cluster_pids: dict[str, int] = {}
        if kubeconfig is None:
            from tests.support.localcluster import LocalCluster

            cluster = stack.enter_context(LocalCluster(work / "cluster"))
            kubeconfig = cluster.kubeconfig
            cluster_pids = {
                k: v
                for k, v in cluster.pids().items()
                # the controller manager's garbage collector deletes the finished jobs' Secrets
                if k in ("kube-apiserver", "etcd", "kube-controller-manager")
            }
        result = bench(kubeconfig, levels, args.requests, work, cluster_pids)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for row in result["levels"]:
        print(
            f"{row['concurrency']:>7} {row['requests']:>8} {row['rps']:>7} "
            f"{row['p50_ms']:>7} {row['p99_ms']:>7} {row['max_ms']:>7}  statuses {row['statuses']}"
            f"  CPU ms/request {row['cpu_ms_per_request']}"
        )
    print(
        f"mean Moodle probe {result['mean_probe_ms']} ms; "
        f"at most {result['max_live_archivejobs']} live ArchiveJobs seen; "
        f"capacity re-checks by source {result['rechecks']}"
    )
    print(f"load average during the run: {result['load_average']}")
    worst = result["levels"][-1]
    print(f"p99 at {worst['concurrency']} clients: {worst['p99_ms']} ms (target < 250 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
