"""`make demo`: the whole product on this machine.

Builds (or reuses) the tools and images, starts a local control plane and a real node
(kubelet + containerd, with local-path-provisioner and its StorageClass `local-path`, from
which each job gets its work volume), `helm install`s the chart, starts a fake Moodle with a
quiz of several attempts (formulas included), posts the plugin's request to the gateway,
follows the ArchiveJob until it ends, and shows the archive Moodle stored and
`kubectl get archivejobs`.

The cluster and the node keep running afterwards for a look around; `make demo-down` stops
them (a new `make demo` also starts by stopping the previous one).

    python scripts/demo.py up [--dir DIR] [--attempts N]
    python scripts/demo.py down [--dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakemoodle import FakeMoodle  # noqa: E402
from tests.support.cluster_env import tools_bin_dir  # noqa: E402
from tests.support.localcluster import LocalCluster  # noqa: E402
from tests.support.localpath import STORAGE_CLASS  # noqa: E402
from tests.support.nodestack import NodeStack, StackOptions, progress_line  # noqa: E402
from tests.support.realnode import stop_node  # noqa: E402

DEFAULT_DIR = REPO / "out" / "demo-cluster"


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def down(run_dir: Path) -> int:
    node_dir = run_dir / "node"
    if node_dir.exists():
        stop_node(node_dir)
    if not (run_dir / "cluster").is_dir():
        return 0
    cluster = LocalCluster(run_dir / "cluster", die_with_parent=False)
    was_running = cluster.is_running()
    cluster.stop(remove_data=True)
    say(f"stopped ({'it was running' if was_running else 'nothing was running'} in {run_dir})")
    return 0


def follow(stack: NodeStack, job_id: str) -> dict:
    interactive = sys.stdout.isatty()
    last = ""

    def show(status: dict) -> None:
        nonlocal last
        line = progress_line(status)
        if line == last:
            return
        last = line
        if interactive:
            print(f"\r\033[K  {line[:150]}", end="", flush=True)
        else:
            print(f"  {line}", flush=True)

    final = stack.wait_final(job_id, timeout=900, on_status=show)
    if interactive:
        print()
    return final


def up(run_dir: Path, attempts: int) -> int:
    down(run_dir)
    out = REPO / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    cluster = LocalCluster(run_dir / "cluster", nodes=0, die_with_parent=False)
    say("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler)")
    cluster.start()
    with FakeMoodle(report_latency=0.2) as moodle:
        say(f"fake Moodle at {moodle.base_url}")
        # Each job gets a work volume from the node's local-path-provisioner (resumable).
        options = StackOptions(work_volume_class=STORAGE_CLASS)
        stack = NodeStack(cluster, run_dir, [moodle.base_url], options, log=say, keep_running=True)
        stack.start()
        say(f"gateway at {stack.gateway_url}; the worker URL to enter in Moodle")
        quiz = moodle.create_quiz(attempts=attempts, with_formulas=True, attachments_per_attempt=1)
        job = moodle.create_job(quiz, backups=("quiz",))
        say(f"quiz {quiz.quizid}: {attempts} attempts with formulas; the plugin posts the task")
        submitted = moodle.submit_job(job, stack.gateway_url)
        if not submitted.ok:
            say(f"the gateway refused the task: {submitted.http_status} {submitted.message}")
            return 1
        job_id = str(submitted.data["jobid"])
        say(f"accepted: job {job_id}; following its ArchiveJob")
        final = follow(stack, job_id)
        status = final.get("status") or {}
        state = moodle.job(job_id)
        say(f"ArchiveJob {final['metadata']['name']}: {status.get('phase')}; "
            f"Moodle's job status: {state.status_name}")  # fmt: skip
        if state.artifact is None:
            say("Moodle stored no archive")
            print(stack.diagnose())
            return 1
        archive = out / f"{job.request_body['archive_filename']}.zip"
        archive.write_bytes(state.artifact)
        say(f"the archive Moodle stored ({len(state.artifact)} bytes) is copied to {archive}:")
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                print(f"  {info.file_size:>9}  {info.filename}")
    kubectl = tools_bin_dir() / "kubectl"
    say(f"kubectl get archivejobs -n {stack.jobs_namespace}:")
    print(stack.kubectl("get", "archivejobs", "-n", stack.jobs_namespace))
    say("its work volume (from local-path-provisioner; it goes with the ArchiveJob or after the "
        "finished-job TTL):")  # fmt: skip
    print(stack.kubectl("get", "pvc", "-n", stack.jobs_namespace))
    say(f"done in {time.monotonic() - began:.0f} s. The cluster and node keep running:")
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    print(f"  {kubectl} describe archivejob -n {stack.jobs_namespace} {final['metadata']['name']}")
    print(f"  {kubectl} get pods -A")
    print("  make demo-down    # stops the node and the control plane")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.py")
    parser.add_argument("command", choices=["up", "down"], nargs="?", default="up")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--attempts", type=int, default=5)
    args = parser.parse_args(argv)
    if args.command == "down":
        return down(args.dir.resolve())
    try:
        return up(args.dir.resolve(), args.attempts)
    except Exception as err:
        say(f"ERROR: {err}")
        say("`make demo-down` stops what was started")
        return 1


if __name__ == "__main__":
    sys.exit(main())
