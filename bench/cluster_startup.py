"""Start-up time of the local control plane (tools already built) and the peak memory of its
processes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), sampled from
the start until after a small workload of Jobs has completed.

    .venv/bin/python bench/cluster_startup.py [--runs 3] [--jobs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.cluster_env import ToolchainMissing, require_tools
from tests.support.localcluster import LocalCluster

MIB = 1024 * 1024


class PeakMemory:
    """Samples the summed RSS and PSS of a changing set of processes in a thread."""

    def __init__(self, pids: Callable[[], dict[str, int]], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_pss_by_name: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        rss = pss = 0
        for name, pid in self.pids().items():
            try:
                info = psutil.Process(pid).memory_full_info()
            except psutil.Error:
                continue
            rss += info.rss
            pss += info.pss
            self.peak_pss_by_name[name] = max(self.peak_pss_by_name.get(name, 0), info.pss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_jobs(kubeconfig: Path, count: int) -> float:
    """Create `count` Jobs whose KWOK pods run 1 s; return the seconds until all complete."""
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
    began = time.monotonic()
    for i in range(count):
        pod = client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(annotations={"kwok.moodlearchiver.io/run-duration": "1s"}),
            spec=client.V1PodSpec(
                restart_policy="Never",
                containers=[client.V1Container(name="main", image="bench:none")],
            ),
        )
        job = client.V1Job(
            metadata=client.V1ObjectMeta(name=f"job-{i}"),
            spec=client.V1JobSpec(template=pod, backoff_limit=0),
        )
        batch.create_namespaced_job("bench", job)
    deadline = began + 300
    while time.monotonic() < deadline:
        jobs = batch.list_namespaced_job("bench").items
        if sum(1 for j in jobs if (j.status.succeeded or 0) >= 1) == count:
            api.close()
            return time.monotonic() - began
        time.sleep(0.2)
    api.close()
    raise TimeoutError(f"{count} Jobs did not complete within 300 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cluster start-ups to time")
    parser.add_argument("--jobs", type=int, default=20, help="Jobs to run in the last start-up")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    try:
        require_tools()
    except ToolchainMissing as err:
        print(f"cluster_startup: {err}", file=sys.stderr)
        return 2

    totals: list[float] = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
            cluster = LocalCluster(Path(tmp), nodes=args.nodes)
            with PeakMemory(cluster.pids) as memory:
                try:
                    cluster.start()
                    totals.append(cluster.timings["total"])
                    phases = ", ".join(
                        f"{k} {v:.2f} s" for k, v in cluster.timings.items() if k != "total"
                    )
                    print(f"run {run}: ready in {cluster.timings['total']:.2f} s ({phases})")
                    if run == args.runs and args.jobs:
                        took = run_jobs(cluster.kubeconfig, args.jobs)
                        print(f"run {run}: {args.jobs} Jobs completed in {took:.1f} s")
                        time.sleep(2)
                finally:
                    cluster.stop(remove_data=True)
    print(
        f"start-up (warm tool cache, {args.nodes} KWOK nodes, {args.runs} runs): "
        f"median {statistics.median(totals):.2f} s, min {min(totals):.2f} s, "
        f"max {max(totals):.2f} s"
    )
    print(
        f"peak memory of the control-plane processes (last run, incl. {args.jobs} Jobs): "
        f"RSS sum {memory.peak_rss / MIB:.0f} MiB, PSS sum {memory.peak_pss / MIB:.0f} MiB"
    )
    for name, pss in sorted(memory.peak_pss_by_name.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} peak PSS {pss / MIB:6.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
