"""The local control plane's helpers that need no cluster: versions, tool lookup, port claims,
process records."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.support import cluster_env
from tests.support.cluster_procs import (
    ProcessRecord,
    Supervisor,
    claim_free_ports,
    read_records,
    release_ports,
    wait_for,
)


def test_versions_file_pins_every_tool():
    versions = cluster_env.read_versions()
    for key in ("KUBERNETES_VERSION", "KUBERNETES_STAGING_VERSION", "ETCD_VERSION",
                "KWOK_VERSION", "HELM_VERSION", "CRI_TOOLS_VERSION"):  # fmt: skip
        assert versions[key].startswith("v"), key
    minor = versions["KUBERNETES_VERSION"].split(".")[1]
    assert versions["KUBERNETES_STAGING_VERSION"].startswith(f"v0.{minor}.")
    assert int(minor) <= 34, "newer kubelets refuse this machine's cgroup v1"


def test_tools_live_in_the_cache_keyed_by_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("MOODLE_ARCHIVER_CACHE_DIR", str(tmp_path))
    version = cluster_env.read_versions()["KUBERNETES_VERSION"]
    assert cluster_env.tools_bin_dir() == tmp_path / f"k8s-{version}" / "bin"
    with pytest.raises(cluster_env.ToolchainMissing, match="run `make cluster-tools`"):
        cluster_env.require_tools()


def test_port_claims_keep_two_clusters_apart(tmp_path: Path):
    claims = tmp_path / "claims"
    first = claim_free_ports(6, tmp_path / "run-a", claims)
    second = claim_free_ports(6, tmp_path / "run-b", claims)
    assert len(set(first)) == 6 and not set(first) & set(second)
    assert sorted(int(p.name) for p in claims.iterdir()) == sorted(first + second)
    release_ports(first + second, claims)
    assert not list(claims.iterdir())


def test_supervisor_records_and_stops_processes(tmp_path: Path):
    sup = Supervisor(tmp_path, die_with_parent=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = sup.start("sleeper", sleeper)
    (record,) = read_records(tmp_path)
    assert record.pid == pid and record.alive()
    # another process (e.g. `localcluster down`) finds and stops it through the records
    assert Supervisor(tmp_path, die_with_parent=False).stop_all(grace_seconds=5) == []
    assert not record.alive()
    assert read_records(tmp_path) == []


def test_a_reused_pid_is_not_taken_for_the_recorded_process():
    record = ProcessRecord("ghost", os.getpid(), start_ticks=1, log="")
    assert not record.alive()


def test_a_process_whose_main_thread_exited_first_is_alive_until_all_threads_have(
    tmp_path: Path,
):
    # The main thread leaves with exit(2) (not exit_group): the process shows as a zombie
    # while its other thread still runs, as a Go server's may during its shutdown.
    script = (
        "import ctypes, threading, time\n"
        "threading.Thread(target=lambda: time.sleep(3)).start()\n"
        "time.sleep(0.2)\n"
        "ctypes.CDLL(None).syscall(60, 0)\n"  # SYS_exit on x86_64
    )
    sup = Supervisor(tmp_path, die_with_parent=True)
    sup.start("half-dead", [sys.executable, "-c", script])
    (record,) = read_records(tmp_path)
    time.sleep(1.0)
    state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state == "Z" and record.alive(), "a thread still runs: not exited yet"
    assert wait_for(lambda: not record.alive(), 10)
