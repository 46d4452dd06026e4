"""A real, local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK with fake nodes, all on loopback ports, in one run directory.

    with LocalCluster(Path("/tmp/c1")) as cluster:      # start() ... stop()
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)

    python -m tests.support.localcluster up --dir DIR [--nodes 3]
    python -m tests.support.localcluster down --dir DIR
    python -m tests.support.localcluster status --dir DIR

The binaries come from `make cluster-tools` (see cluster/versions.env). Layout of a run
directory: kubeconfig (admin), pki/, etcd/ (data), logs/<component>.log, state.json,
processes.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType

from tests.support.cluster_env import KWOK_CONFIG_DIR, require_tools
from tests.support.cluster_http import AdminApi, get_ok, insecure_context
from tests.support.cluster_pki import APISERVER_DNS_NAMES, Pki, write_kubeconfig
from tests.support.cluster_procs import (
    Supervisor,
    claim_free_ports,
    read_records,
    release_ports,
    unmount_below,
    wait_for,
)

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service's ClusterIP (nothing is sent there)
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
FRONT_PROXY_CLIENT = "front-proxy-client"  # the aggregator's identity towards extension servers
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


class ClusterError(RuntimeError):
    """The local control plane could not be started or reached."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int  # gRPC only
    etcd_http: int  # /health, /metrics
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


class LocalCluster:
    """Starts and stops one local control plane; usable as a context manager."""

    def __init__(
        self,
        run_dir: Path,
        *,
        nodes: int = 3,
        bin_dir: Path | None = None,
        die_with_parent: bool = True,
        startup_timeout: float = 180.0,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self.timings: dict[str, float] = {}
        self.ports: Ports | None = None
        self._supervisor = Supervisor(self.run_dir, die_with_parent=die_with_parent)
        self._api: AdminApi | None = None

    # ------------------------------------------------------------ public API

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters), written by start()."""
        return self.run_dir / "kubeconfig"

    @property
    def server(self) -> str:
        if self.ports is None:
            raise ClusterError("the cluster is not started")
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def ca_cert(self) -> Path:
        return self.run_dir / "pki" / "ca.crt"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def pids(self) -> dict[str, int]:
        """Live control-plane processes by component name."""
        return self._supervisor.pids()

    def is_running(self) -> bool:
        return any(rec.alive() for rec in read_records(self.run_dir))

    def start(self) -> LocalCluster:
        tools = require_tools(bin_dir=self.bin_dir)
        if self.is_running():
            raise ClusterError(
                f"a cluster is already running in {self.run_dir}: stop it with "
                f"`python -m tests.support.localcluster down --dir {self.run_dir}`"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in ("etcd", "pki", "logs"):  # every start is a fresh cluster
            shutil.rmtree(self.run_dir / leftover, ignore_errors=True)
        began = time.monotonic()
        try:
            self.ports = Ports(*claim_free_ports(len(fields(Ports)), self.run_dir))
            self._write_state("starting")
            with self._timed("pki"):
                pki = self._make_pki()
            with self._timed("etcd"):
                self._start_etcd(tools["etcd"])
            with self._timed("kube-apiserver"):
                self._start_apiserver(tools["kube-apiserver"])
            with self._timed("controllers, scheduler, kwok, nodes"):
                self._start_controllers(tools, pki)
                self._create_nodes()
                self._wait_until_usable()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        self._write_state("running")
        return self

    def stop(self, *, remove_data: bool = False) -> list[str]:
        """Stop every process of this run directory (also those started by another Python
        process), unmount what is mounted below it and release its ports. Returns once every
        process has exited (all its threads) and nothing listens on its ports any more, with
        the names of processes that ignored SIGTERM and were killed."""
        killed = self._supervisor.stop_all()
        unmount_below(self.run_dir)
        state = _read_state(self.run_dir)
        ports = state.get("ports") or (asdict(self.ports) if self.ports else {})
        wait_for(lambda: not any(_listening(p) for p in ports.values()), 10.0)
        release_ports(list(ports.values()))
        if state:
            self._write_state("stopped")
        if remove_data:
            shutil.rmtree(self.run_dir / "etcd", ignore_errors=True)
        return killed

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ start-up steps

    def _timed(self, phase: str) -> _Timer:
        return _Timer(self.timings, phase)

    def _wait(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            self._supervisor.check()
            if condition():
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{what} not ready after {self.startup_timeout:.0f} s; logs in {self.log_dir}"
                )
            time.sleep(0.1)

    def _make_pki(self) -> Pki:
        assert self.ports is not None
        pki = Pki(self.run_dir / "pki")
        pki.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=APISERVER_DNS_NAMES,
            ips=["127.0.0.1", SERVICE_IP],
        )
        admin = pki.issue("admin", "kubernetes-admin", organizations=["system:masters"])
        kcm = pki.issue("controller-manager", "system:kube-controller-manager")
        scheduler = pki.issue("scheduler", "system:kube-scheduler")
        pki.issue("front-proxy-client", FRONT_PROXY_CLIENT)
        # What the API server shows a real node's kubelet for logs, exec and `kubectl cp`.
        pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
        pki.service_account_keys()
        server = f"https://127.0.0.1:{self.ports.apiserver}"
        write_kubeconfig(self.kubeconfig, server, pki.ca.cert, admin, "admin")
        write_kubeconfig(self.run_dir / "controller-manager.kubeconfig", server, pki.ca.cert, kcm,
                         "system:kube-controller-manager")  # fmt: skip
        write_kubeconfig(self.run_dir / "scheduler.kubeconfig", server, pki.ca.cert, scheduler,
                         "system:kube-scheduler")  # fmt: skip
        self._api = AdminApi(server, str(pki.ca.cert), admin)
        return pki

    def _start_etcd(self, etcd: Path) -> None:
        assert self.ports is not None
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        http = f"http://127.0.0.1:{self.ports.etcd_http}"
        self._supervisor.start("etcd", [
            str(etcd), "--name=local", f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-client-http-urls={http}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync", "--log-level=warn",
        ])  # fmt: skip
        self._wait("etcd", lambda: get_ok(f"{http}/health"))

    def _start_apiserver(self, binary: Path) -> None:
        assert self.ports is not None and self._api is not None
        pki = self.run_dir / "pki"
        self._supervisor.start("kube-apiserver", [
            str(binary),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports.apiserver}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # the aggregation layer (kube-controller-manager and kube-scheduler read this too)
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--authorization-mode=Node,RBAC",
            # A real node's kubelet (logs, exec, `kubectl cp`): at its InternalIP, with a client
            # certificate; it serves with a self-signed certificate, as kubelets do by default.
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # no real Service traffic here; the `kubernetes` Endpoints would be loopback (invalid)
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false",
        ])  # fmt: skip
        api = self._api
        self._wait("kube-apiserver", api.ready)

    def _start_controllers(self, tools: dict[str, Path], pki: Pki) -> None:
        assert self.ports is not None
        kcm_conf = self.run_dir / "controller-manager.kubeconfig"
        self._supervisor.start("kube-controller-manager", [
            str(tools["kube-controller-manager"]),
            *_component_flags(kcm_conf, self.ports.controller_manager),
            f"--cert-dir={self.run_dir / 'controller-manager'}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.dir / 'sa.key'}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--controllers=*",
        ])  # fmt: skip
        sched_conf = self.run_dir / "scheduler.kubeconfig"
        self._supervisor.start("kube-scheduler", [
            str(tools["kube-scheduler"]),
            *_component_flags(sched_conf, self.ports.scheduler),
            f"--cert-dir={self.run_dir / 'scheduler'}",
        ])  # fmt: skip
        kwok_home = self.run_dir / "kwok-home"  # keeps ~/.kwok/kwok.yaml of the user out
        kwok_home.mkdir(exist_ok=True)
        self._supervisor.start("kwok", [
            str(tools["kwok"]), f"--kubeconfig={self.kubeconfig}",
            f"--config={KWOK_CONFIG_DIR / 'kwok.yaml'}",
            f"--config={KWOK_CONFIG_DIR / 'node-stages.yaml'}",
            f"--config={KWOK_CONFIG_DIR / 'pod-stages.yaml'}",
            f"--server-address=127.0.0.1:{self.ports.kwok}",
            f"--node-port={self.ports.kwok}",
        ], env={"HOME": str(kwok_home)})  # fmt: skip

    def _create_nodes(self) -> None:
        assert self._api is not None
        for name in self.node_names:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
            }
            self._api.request("POST", "/api/v1/nodes", node)

    def _nodes_ready(self) -> bool:
        assert self._api is not None
        ready = set()
        for node in self._api.get("/api/v1/nodes").get("items", []):
            status = node.get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
            taints = {t["key"] for t in node.get("spec", {}).get("taints", [])}
            if conditions.get("Ready") == "True" and not taints & NOT_READY_TAINTS:
                ready.add(node["metadata"]["name"])
        return ready >= set(self.node_names)

    def _default_service_account_exists(self) -> bool:
        assert self._api is not None
        try:
            self._api.get("/api/v1/namespaces/default/serviceaccounts/default")
        except RuntimeError:
            return False
        return True

    def _wait_until_usable(self) -> None:
        assert self.ports is not None
        ctx = insecure_context()
        kcm = f"https://127.0.0.1:{self.ports.controller_manager}/healthz"
        sched = f"https://127.0.0.1:{self.ports.scheduler}/healthz"
        self._wait("kube-controller-manager", lambda: get_ok(kcm, ctx=ctx))
        self._wait("kube-scheduler", lambda: get_ok(sched, ctx=ctx))
        self._wait("the service-account controller", self._default_service_account_exists)
        self._wait(f"KWOK nodes {', '.join(self.node_names)}", self._nodes_ready)

    def _write_state(self, status: str) -> None:
        state = {
            "status": status,
            "server": self.server if self.ports else None,
            "kubeconfig": str(self.kubeconfig),
            "ports": asdict(self.ports) if self.ports else {},
            "nodes": self.node_names,
            "timings": self.timings,
        }
        (self.run_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def _component_flags(kubeconfig: Path, port: int) -> list[str]:
    """Flags shared by kube-controller-manager and kube-scheduler."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]


class _Timer:
    def __init__(self, timings: dict[str, float], phase: str) -> None:
        self.timings, self.phase = timings, phase

    def __enter__(self) -> None:
        self.began = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.phase] = time.monotonic() - self.began


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.localcluster")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", required=True, type=Path, help="the run directory")
    parser.add_argument("--nodes", type=int, default=3, help="number of KWOK nodes (up)")
    parser.add_argument("--timeout", type=float, default=180.0, help="start-up timeout, seconds")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir, nodes=args.nodes, die_with_parent=False,
                           startup_timeout=args.timeout)  # fmt: skip
    if args.command == "up":
        if cluster.is_running():
            print(f"cluster: already running in {cluster.run_dir}; kubeconfig {cluster.kubeconfig}")
            return 0
        try:
            cluster.start()
        except Exception as err:  # print the reason, not a traceback, for `make cluster-up`
            print(f"cluster: ERROR: {err}", file=sys.stderr)
            return 1
        print(f"cluster: up in {cluster.timings['total']:.1f} s at {cluster.server}")
        print(f"cluster: kubeconfig {cluster.kubeconfig}")
        print(f"cluster: logs in {cluster.log_dir}; stop with `make cluster-down`")
        return 0
    if args.command == "down":
        was_running = cluster.is_running()
        records = read_records(cluster.run_dir)
        ports = (_read_state(cluster.run_dir).get("ports") or {}).values()
        killed = cluster.stop()
        left = [rec.name for rec in records if rec.alive()]
        left += [f"a process on port {p}" for p in ports if _listening(p)]
        if left:
            print(f"cluster: ERROR: still running: {', '.join(left)}", file=sys.stderr)
            return 1
        note = f" (killed after the grace period: {', '.join(killed)})" if killed else ""
        what = "stopped" if was_running else "was not running"
        print(f"cluster: {what} in {cluster.run_dir}{note}")
        return 0
    state = _read_state(cluster.run_dir)
    running = cluster.is_running()
    print(json.dumps({**state, "running": running, "pids": cluster.pids()}, indent=2))
    return 0 if running else 3


if __name__ == "__main__":
    sys.exit(main())
