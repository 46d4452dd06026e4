"""A real Kubernetes node for the local control plane: kubelet + Debian's containerd and runc.

    with RealNode(cluster, Path("/tmp/n1"), images) as node:   # start() ... stop()
        node.wait_ready()

    python -m tests.support.realnode up --cluster-dir DIR --dir NODE_DIR
    python -m tests.support.realnode down --dir NODE_DIR

How it joins: a private key and a CSR for `system:node:<name>` (group `system:nodes`) are
made with openssl, submitted to the cluster's CertificateSigningRequest API with the
`kubernetes.io/kube-apiserver-client-kubelet` signer, approved with the admin kubeconfig and
signed by the controller-manager with the cluster's CA; the kubelet uses that certificate
(the Node authorizer and NodeRestriction apply to it as to any node).

The node: its own containerd (CRI plugin, overlayfs snapshotter, runc, cgroupfs driver, a
loopback-only CNI network) on a socket in the run directory; the images built by
tests.support.imagebuild imported into its `k8s.io` namespace (the pause image is its
sandbox image); a kubelet with `failCgroupV1: false` (this machine's cgroups are v1), serving
on the machine's own address (its InternalIP) to client certificates of the cluster's CA only
(the API server's), so that `kubectl logs`, `exec` and `cp` work as on any cluster; rancher's
local-path-provisioner as a host process with the StorageClass `local-path`
(tests/support/localpath.py), so that PersistentVolumeClaims are provisioned for real. Pods
that need a network here use hostNetwork (no CNI network reaches anywhere); the node is
tainted so that only pods that tolerate it land on it. Image pulls never happen
(`imagePullPolicy: Never` in what runs here).

containerd's image store is kept in $MOODLE_ARCHIVER_CACHE_DIR/node/containerd so that the
images are imported once; one node may use it at a time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.cluster_env import cache_root, require_tools
from tests.support.cluster_pki import CertKey, write_kubeconfig
from tests.support.cluster_procs import (
    ComponentFailed,
    Supervisor,
    claim_free_ports,
    read_records,
    release_ports,
    unmount_below,
    wait_for,
)
from tests.support.imagebuild import Images
from tests.support.localcluster import _Timer
from tests.support.localpath import LocalPathProvisioner

NODE_TAINT_KEY = "moodlearchiver.io/local-node"
NODE_LABEL = "moodlearchiver.io/local-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Host binaries the node needs, and the Debian package of each.
HOST_TOOLS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "openssl": "openssl",
}


class NodeError(RuntimeError):
    """The node could not be started, joined or stopped cleanly."""


def node_tolerations() -> list[dict[str, str]]:
    """What a pod needs to be scheduled on the real node."""
    return [{"key": NODE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]


def node_address() -> str:
    """This machine's address on its default route: the node's InternalIP (a kubelet may not
    take a loopback one) and where its kubelet listens, so that the API server reaches it for
    logs, exec and `kubectl cp`; loopback if there is no route (then only locally)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # picks the route; sends nothing
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def containerd_root() -> Path:
    return cache_root() / "node" / "containerd"


def check_host() -> None:
    """Raise NodeError naming what is missing on this machine."""
    missing = [
        f"{tool} (Debian: {pkg})" for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)
    ]
    if not (CNI_BIN_DIR / "loopback").is_file():
        missing.append(f"{CNI_BIN_DIR}/loopback (Debian: containernetworking-plugins)")
    if missing:
        raise NodeError(f"missing: {', '.join(missing)}; run `make node-deps`")
    if os.geteuid() != 0:
        raise NodeError("the node needs root (kubelet and containerd manage mounts and cgroups)")


class RealNode:
    """One kubelet node of a LocalCluster-like control plane (`server`, `ca_cert`,
    `kubeconfig`); usable as a context manager."""

    def __init__(
        self,
        cluster: object,
        run_dir: Path,
        images: Images,
        *,
        name: str = "local-node",
        die_with_parent: bool = True,
        startup_timeout: float = 120.0,
    ) -> None:
        self.cluster = cluster
        self.run_dir = run_dir.resolve()
        self.images = images
        self.name = name
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.timings: dict[str, float] = {}
        self.cri_root = containerd_root()
        self.state_dir = self.run_dir / "containerd-state"
        self.socket = self.run_dir / "containerd.sock"
        self.kubelet_root = self.run_dir / "kubelet"
        self.pod_logs = self.run_dir / "pod-logs"
        self.ports: dict[str, int] = {}
        self.address = node_address()
        self._containerd = Supervisor(
            self.run_dir / "containerd-proc", die_with_parent=die_with_parent
        )
        self._kubelet = Supervisor(self.run_dir / "kubelet-proc", die_with_parent=die_with_parent)
        self.provisioner = LocalPathProvisioner(
            getattr(cluster, "kubeconfig", Path("/nonexistent")),
            self.run_dir / "local-path",
            images.base,
            die_with_parent=die_with_parent,
        )

    # ------------------------------------------------------------------ public API

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def kubelet_log(self) -> Path:
        return self.run_dir / "kubelet-proc" / "logs" / "kubelet.log"

    def start(self) -> RealNode:
        check_host()
        tools = require_tools(("kubelet", "crictl", "local-path-provisioner"))
        self._claim_store()
        began = time.monotonic()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ports = claim_free_ports(2, self.run_dir)
            self.ports = {"kubelet": ports[0], "healthz": ports[1]}
            self._write_state("starting")
            with self._timed("containerd"):
                self._start_containerd()
            with self._timed("images"):
                self._import_images()
                self._remove_stale_pods()
            with self._timed("join"):
                kubeconfig = self._join()
            with self._timed("kubelet"):
                self._write_kubelet_config()
                self._kubelet_argv = self._kubelet_command(tools["kubelet"], kubeconfig)
                self._kubelet.start("kubelet", self._kubelet_argv)
                self.wait_ready()
            with self._timed("local-path-provisioner"):
                self.provisioner.start()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        self._write_state("running")
        return self

    def stop(self) -> None:
        """Stop the kubelet, remove every pod sandbox, stop containerd and its shims, unmount
        and remove what the node made on the host (cgroups, log links)."""
        for supervised in ("containerd-proc", "kubelet-proc"):  # a start may have failed early
            (self.run_dir / supervised).mkdir(parents=True, exist_ok=True)
        self.provisioner.stop()
        self._kubelet.stop_all()
        if not self._containerd_alive() and self._has_tasks():
            # containerd died (e.g. with the process that started it) and left containers:
            # start it once more so that it removes them properly.
            self._containerd.start("containerd", ["containerd", "--config", str(self._config)])
            wait_for(self._containerd_alive, 30, interval=0.2)
        if self._containerd_alive():
            try:
                self._crictl("rmp", "--all", "--force", timeout=120)
            except (NodeError, subprocess.TimeoutExpired) as err:
                print(f"node: could not remove the pods: {err}", file=sys.stderr)
        self._containerd.stop_all(grace_seconds=15)
        self._kill_shims()
        for directory in (self.kubelet_root, self.state_dir, self.cri_root):
            unmount_below(directory)
        # The kubelet bind-mounts its root directory on itself (os.path.ismount cannot tell).
        while _is_mount_target(self.kubelet_root):
            if subprocess.run(["umount", "-l", str(self.kubelet_root)], check=False).returncode:
                break
        self._remove_cgroups()
        self._remove_log_links()
        shutil.rmtree(self.provisioner.data_dir, ignore_errors=True)  # the volumes' data
        release_ports(
            list(self.ports.values()) or list(_read_state(self.run_dir).get("ports", {}).values())
        )
        with contextlib.suppress(OSError):
            owner = self.cri_root / "owner"
            if owner.read_text().strip() == str(self.run_dir):
                owner.unlink()
        if (self.run_dir / "state.json").exists():
            self._write_state("stopped")

    def restart_kubelet(self, down_seconds: float = 3.0) -> None:
        """Stop the kubelet (its pods keep running under containerd) and start it again."""
        self._kubelet.stop_all()
        time.sleep(down_seconds)
        self._kubelet.start("kubelet", self._kubelet_argv)

    def wait_ready(self, timeout: float | None = None) -> None:
        api = self._core()
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while True:
            self._kubelet.check()
            self._containerd.check()
            self.provisioner.check()
            with contextlib.suppress(ApiException):
                node = api.read_node(self.name)
                conditions = {c.type: c for c in node.status.conditions or []}
                ready = conditions.get("Ready")
                if ready is not None and ready.status == "True":
                    return
            if time.monotonic() > deadline:
                raise NodeError(
                    f"node {self.name} not Ready after {timeout or self.startup_timeout:.0f} s; "
                    f"kubelet log {self.kubelet_log}"
                )
            time.sleep(0.5)

    def crictl(self, *args: str, timeout: float = 60) -> str:
        return self._crictl(*args, timeout=timeout)

    def container_ids(self, pod_name: str, container: str) -> list[str]:
        out = self._crictl(
            "ps",
            "-a",
            "-q",
            "--name",
            f"^{container}$",
            "--label",
            f"io.kubernetes.pod.name={pod_name}",
        )
        return out.split()

    def inspect_container(self, container_id: str) -> dict:
        return json.loads(self._crictl("inspect", container_id))

    def kill_container(self, container_id: str) -> int:
        """SIGKILL the container's main process, as the OOM killer or a crash would."""
        pid = int(self.inspect_container(container_id)["info"]["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def pod_log(self, namespace: str, pod_name: str) -> str:
        """Container logs of a pod, read from the node's log directory (also after the pod is
        gone, unlike `kubectl logs`)."""
        texts = []
        for path in sorted(self.pod_logs.glob(f"{namespace}_{pod_name}_*/*/*.log")):
            texts.append(
                f"--- {path.relative_to(self.pod_logs)}\n{path.read_text(errors='replace')}"
            )
        return "\n".join(texts)

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ containerd

    def _timed(self, phase: str) -> _Timer:
        return _Timer(self.timings, phase)

    def _claim_store(self) -> None:
        self.cri_root.mkdir(parents=True, exist_ok=True)
        owner = self.cri_root / "owner"
        with contextlib.suppress(OSError):
            other = Path(owner.read_text().strip())
            if other != self.run_dir and any(
                r.alive() for r in read_records(other / "containerd-proc")
            ):
                raise NodeError(
                    f"another node (run directory {other}) uses {self.cri_root}; stop it with "
                    f"`python -m tests.support.realnode down --dir {other}`"
                )
        owner.write_text(f"{self.run_dir}\n")

    def _containerd_config(self) -> str:
        cni_conf = self.run_dir / "cni"
        registry = self.run_dir / "registry-hosts"
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.cri_root}"
state = "{self.state_dir}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.cri_root / "opt"}"
{cri}]
  sandbox_image = "{self.images.pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE: never ask runc for an oom_score_adj below
  # containerd's own (the sandbox's default of -998 makes runc fail to start any pod).
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni_conf}"
{cri}.registry]
  config_path = "{registry}"
"""

    def _start_containerd(self) -> None:
        for directory in (self.state_dir, self.run_dir / "cni", self.run_dir / "registry-hosts"):
            directory.mkdir(parents=True, exist_ok=True)
        # Only loopback: the runtime reports its network ready, and pods that are not on the
        # host network get no route anywhere (nothing here is meant to be reached that way).
        (self.run_dir / "cni" / "10-loopback.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "moodle-archiver-local",
                    "plugins": [{"type": "loopback"}],
                },
                indent=1,
            )
        )
        self._config.write_text(self._containerd_config())
        self.socket.unlink(missing_ok=True)
        self._containerd.start("containerd", ["containerd", "--config", str(self._config)])
        if not wait_for(self._containerd_alive, 30, interval=0.2):
            self._containerd.check()
            raise NodeError(f"containerd did not answer on {self.socket}; logs in {self.run_dir}")

    @property
    def _config(self) -> Path:
        return self.run_dir / "containerd.toml"

    def _has_tasks(self) -> bool:
        """Containers of this node's containerd that may still be running."""
        tasks = self.state_dir / "io.containerd.runtime.v2.task" / "k8s.io"
        return self._config.is_file() and tasks.is_dir() and any(tasks.iterdir())

    def _containerd_alive(self) -> bool:
        if not self.socket.exists():
            return False
        done = subprocess.run(self._ctr("version"), capture_output=True, check=False, timeout=10)
        return done.returncode == 0

    def _ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args]

    def _crictl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        crictl = require_tools(("crictl",))["crictl"]
        endpoint = f"unix://{self.socket}"
        argv = [
            str(crictl),
            "--runtime-endpoint",
            endpoint,
            "--image-endpoint",
            endpoint,
            "--timeout",
            "30s",
            *args,
        ]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env={**os.environ, "CRI_CONFIG_FILE": "/dev/null"},
        )
        if check and done.returncode != 0:
            raise NodeError(f"crictl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _image_refs(self) -> dict[str, str]:
        """Image references in the store and the manifest digest each points to."""
        out = subprocess.run(
            self._ctr("images", "ls"), capture_output=True, text=True, check=True
        ).stdout
        return {w[0]: w[2] for w in (line.split() for line in out.splitlines()[1:]) if len(w) > 2}

    def _import_images(self) -> None:
        present = self._image_refs()
        for ref, archive in self.images.archives.items():
            if ref in present:
                continue
            done = subprocess.run(
                self._ctr("images", "import", "--snapshotter", "overlayfs", archive),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise NodeError(f"ctr images import {archive} failed: {done.stderr.strip()}")
        # Older builds of our images, under their tags and under the image ids the CRI plugin
        # adds (sha256:...): removed, so that the kept store does not grow with every build.
        refs = self._image_refs()
        wanted = {refs[ref] for ref in self.images.archives if ref in refs}
        for ref, digest in refs.items():
            ours = ref.startswith(("localhost/moodle-archive", "sha256:"))
            if ours and digest not in wanted:
                subprocess.run(self._ctr("images", "rm", "--sync", ref), capture_output=True)

    def _remove_stale_pods(self) -> None:
        """Sandboxes a crashed earlier run left in the kept store."""
        if self._crictl("pods", "-q").split():
            self._crictl("rmp", "--all", "--force", timeout=120)

    def _kill_shims(self) -> None:
        """containerd-shim-runc-v2 processes of this node's containerd (found by its socket)."""
        needle = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and needle in argv:
                    os.kill(int(proc.name), signal.SIGKILL)

    # ------------------------------------------------------------------ joining

    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(
            config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        )

    def _join(self) -> Path:
        """Client certificate for system:node:<name> from the cluster's CSR API."""
        pki = self.run_dir / "pki"
        pki.mkdir(exist_ok=True)
        key, csr = pki / "kubelet-client.key", pki / "kubelet-client.csr"
        _openssl(
            "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)
        )
        key.chmod(0o600)
        _openssl(
            "req",
            "-new",
            "-key",
            str(key),
            "-subj",
            f"/O=system:nodes/CN=system:node:{self.name}",
            "-out",
            str(csr),
        )
        api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        certs = client.CertificatesV1Api(api)
        csr_name = f"node-csr-{self.name}-{uuid.uuid4().hex[:8]}"
        body = client.V1CertificateSigningRequest(
            metadata=client.V1ObjectMeta(name=csr_name),
            spec=client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(csr.read_bytes()).decode(),
                signer_name="kubernetes.io/kube-apiserver-client-kubelet",
                usages=["digital signature", "key encipherment", "client auth"],
                expiration_seconds=30 * 24 * 3600,
            ),
        )
        certs.create_certificate_signing_request(body)
        try:
            self._approve(certs, csr_name)
            signed: list[str] = []

            def issued() -> bool:
                cert = certs.read_certificate_signing_request(csr_name).status.certificate
                signed.extend([cert] if cert else [])
                return bool(cert)

            if not wait_for(issued, 30, interval=0.2):
                raise NodeError(f"the controller-manager did not sign CSR {csr_name} in 30 s")
        finally:
            with contextlib.suppress(ApiException):
                certs.delete_certificate_signing_request(csr_name)
        cert = pki / "kubelet-client.crt"
        cert.write_bytes(base64.b64decode(signed[0]))
        csr.unlink()
        kubeconfig = self.run_dir / "kubelet.kubeconfig"
        write_kubeconfig(
            kubeconfig,
            self.cluster.server,
            self.cluster.ca_cert,
            CertKey(cert, key),
            f"system:node:{self.name}",
        )
        return kubeconfig

    @staticmethod
    def _approve(certs: client.CertificatesV1Api, csr_name: str) -> None:
        """Approve the CSR as the admin; retried while a controller updates it meanwhile."""
        for attempt in range(10):
            current = certs.read_certificate_signing_request(csr_name)
            current.status.conditions = [
                client.V1CertificateSigningRequestCondition(
                    type="Approved",
                    status="True",
                    reason="LocalNodeJoin",
                    message="approved by tests.support.realnode for the local node",
                )
            ]
            try:
                certs.replace_certificate_signing_request_approval(csr_name, current)
                return
            except ApiException as err:
                if err.status != 409 or attempt == 9:
                    raise
            time.sleep(0.2)

    # ------------------------------------------------------------------ kubelet

    def _write_kubelet_config(self) -> None:
        for directory in (self.kubelet_root, self.pod_logs):
            directory.mkdir(parents=True, exist_ok=True)
        conf = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # Client certificates of the cluster's CA only (the API server's), no anonymous.
            "address": self.address,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.cluster.ca_cert)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "resolvConf": "/etc/resolv.conf",
            "clusterDomain": "cluster.local",
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.run_dir / "volume-plugins"),
            "staticPodPath": "",
            "maxPods": 32,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 98,
            "imageGCLowThresholdPercent": 95,
            "evictionHard": {
                "memory.available": "200Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "registerWithTaints": [
                {"key": NODE_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
            ],
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
        }
        (self.run_dir / "kubelet.yaml").write_text(json.dumps(conf, indent=1))

    def _kubelet_command(self, kubelet: Path, kubeconfig: Path) -> list[str]:
        return [
            str(kubelet),
            f"--config={self.run_dir / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.run_dir / 'kubelet-pki'}",
            f"--hostname-override={self.name}",
            f"--node-labels={NODE_LABEL}=true",
            *([f"--node-ip={self.address}"] if self.address != "127.0.0.1" else []),
            "--v=1",
        ]

    # ------------------------------------------------------------------ host clean-up

    def _remove_cgroups(self) -> None:
        """The kubepods hierarchies the kubelet made (empty once every pod is gone)."""
        for controller in CGROUP_ROOT.iterdir():
            top = controller / "kubepods"
            if not top.is_dir():
                continue
            for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def _remove_log_links(self) -> None:
        """The kubelet links each container's log into /var/log/containers."""
        prefix = str(self.pod_logs) + "/"
        for link in Path("/var/log/containers").glob("*.log"):
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(prefix):
                    link.unlink()

    def _write_state(self, status: str) -> None:
        state = {
            "status": status,
            "name": self.name,
            "ports": self.ports,
            "socket": str(self.socket),
            "timings": self.timings,
            "cluster": str(getattr(self.cluster, "run_dir", "")),
        }
        (self.run_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NodeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def _is_mount_target(path: Path) -> bool:
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if line.split()[4].replace("\\040", " ") == target:
                return True
    return False


def _read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- command line


class _ClusterRef:
    """What RealNode needs of a LocalCluster started elsewhere (its run directory)."""

    def __init__(self, run_dir: Path) -> None:
        state = _read_state(run_dir)
        if not state.get("server"):
            raise NodeError(f"no running cluster in {run_dir} (state.json has no server)")
        self.run_dir = run_dir
        self.server = state["server"]
        self.kubeconfig = run_dir / "kubeconfig"
        self.ca_cert = run_dir / "pki" / "ca.crt"


def main(argv: list[str] | None = None) -> int:
    from tests.support.imagebuild import ImageBuildError, ensure_images

    parser = argparse.ArgumentParser(prog="python -m tests.support.realnode")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", required=True, type=Path, help="the node's run directory")
    parser.add_argument("--cluster-dir", type=Path, help="run directory of the cluster (up)")
    parser.add_argument("--name", default="local-node")
    args = parser.parse_args(argv)
    if args.command == "down":
        stop_node(args.dir)
        print(f"node: stopped ({args.dir})")
        return 0
    if args.cluster_dir is None:
        parser.error("up needs --cluster-dir")
    try:
        images = ensure_images(log=lambda m: print(m, file=sys.stderr))
        node = RealNode(
            _ClusterRef(args.cluster_dir), args.dir, images, name=args.name, die_with_parent=False
        )
        node.start()
    except (NodeError, ImageBuildError, ComponentFailed) as err:
        print(f"node: ERROR: {err}", file=sys.stderr)
        return 1
    print(f"node: {args.name} Ready in {node.timings['total']:.1f} s; logs in {node.run_dir}")
    return 0


def stop_node(run_dir: Path) -> None:
    """Stop the node of a run directory (started by this or another process)."""
    no_images = Images(base="", pause="", operator="", job="", archives={})
    RealNode(None, run_dir, no_images, die_with_parent=False).stop()


if __name__ == "__main__":
    sys.exit(main())
