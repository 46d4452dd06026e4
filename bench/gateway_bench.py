"""Benchmark: POST /archive against the real API server with a fast fake Moodle.

Measures requests per second and p50/p99 latency at 1 and 16 concurrent clients in one
run (target: p99 < 250 ms at 16). Each request is a full acceptance: validation, the
Moodle probe (fake Moodle, no added latency), two ArchiveJob lists, the ArchiveJob and
its token Secret created in the API server. A "finisher" thread deletes accepted
ArchiveJobs as they appear, standing in for the operator finishing jobs, so the queue
stays within capacity as it would in production.

    .venv/bin/python bench/gateway_bench.py                 # starts a local control plane
    .venv/bin/python bench/gateway_bench.py --kubeconfig K  # uses a running cluster
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402
from kubernetes import client, config  # noqa: E402

from tests.fakemoodle import FakeMoodle  # noqa: E402
from tests.gateway.crd import install_archivejob_crd  # noqa: E402
from tests.gateway.server import GatewayProcess  # noqa: E402

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
            items = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL
            )["items"]
            self.max_live = max(self.max_live, len(items))
            for item in items:
                with suppress(client.ApiException):
                    self.custom.delete_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL, item["metadata"]["name"]
                    )
            self.stop_event.wait(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_level(url: str, bodies: list[bytes], concurrency: int, total: int) -> dict[str, Any]:
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

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "requests": total,
        "statuses": statuses,
        "rps": round(total / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies), 1),
    }


def _metric_sum_count(text: str, name: str) -> tuple[float, float]:
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def bench(
    kubeconfig: Path, levels: list[int], requests_per_level: int, work: Path
) -> dict[str, Any]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    install_archivejob_crd(api)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    finisher = Finisher(api, namespace)
    try:
        with FakeMoodle() as moodle, GatewayProcess(
            kubeconfig,
            namespace,
            moodle.base_url,
            work / "gateway.log",
            MOODLE_ARCHIVER_LOG_LEVEL="WARNING",
            MOODLE_ARCHIVER_QUEUE_SIZE="200",
        ) as gateway:
            quiz = moodle.create_quiz(attempts=3)
            bodies = [
                json.dumps(moodle.create_job(quiz, protocol="quiz_archiver").request_body).encode()
                for _ in range(8)
            ]
            finisher.start()
            run_level(gateway.url, bodies, 4, 40)  # warm-up: connections, imports, caches
            results = [
                run_level(gateway.url, bodies, level, requests_per_level) for level in levels
            ]
            metrics = requests.get(f"{gateway.url}/metrics", timeout=5).text
            probe_sum, probe_count = _metric_sum_count(
                metrics, "moodle_archiver_gateway_moodle_probe_duration_seconds"
            )
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
        if kubeconfig is None:
            from tests.support.localcluster import LocalCluster

            cluster = stack.enter_context(LocalCluster(work / "cluster"))
            kubeconfig = cluster.kubeconfig
        result = bench(kubeconfig, levels, args.requests, work)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for row in result["levels"]:
        print(
            f"{row['concurrency']:>7} {row['requests']:>8} {row['rps']:>7} "
            f"{row['p50_ms']:>7} {row['p99_ms']:>7} {row['max_ms']:>7}  statuses {row['statuses']}"
        )
    print(
        f"mean Moodle probe {result['mean_probe_ms']} ms; "
        f"at most {result['max_live_archivejobs']} live ArchiveJobs seen"
    )
    worst = result["levels"][-1]
    print(f"p99 at {worst['concurrency']} clients: {worst['p99_ms']} ms (target < 250 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
