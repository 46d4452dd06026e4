"""Plays the kubelet for one job pod: runs its container as a local process.

KWOK keeps the pod Running (the operator is told to annotate job pods with the
`run-forever` outcome); this player reads the pod as the API server has it, makes
its volumes as a kubelet would (ConfigMap and Secret files, a projected
ServiceAccount token issued by the TokenRequest API, emptyDirs) in a temp dir,
maps mount paths in the container's args and env onto that dir, and runs the
container's command (`moodle-archiver run-job ...`) from this venv. The runner's
status patches thus go through real RBAC with its own ServiceAccount's token.
When it exits, the player tells KWOK the outcome (annotations), and a pod that is
deleted meanwhile gets its process stopped with SIGTERM, like a kubelet would.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.cluster_fixtures import create_service_account_token
from tests.support.localcluster import LocalCluster

KWOK = "kwok.moodlearchiver.io"


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


class PodPlayer:
    def __init__(
        self, api: client.ApiClient, cluster: LocalCluster, pod: dict[str, Any], root: Path
    ) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.cluster = cluster
        self.pod = pod
        self.name = pod["metadata"]["name"]
        self.namespace = pod["metadata"]["namespace"]
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.log_path = root / "runner.log"
        self._watch: threading.Thread | None = None
        self.terminated_by_deletion = False

    # --- volumes -------------------------------------------------------------------------------

    def _volume(self, volume: dict[str, Any]) -> Path:
        target = self.root / "volumes" / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            return target
        if "configMap" in volume:
            self._config_map(volume["configMap"], target)
        elif "secret" in volume:
            self._secret(volume["secret"], target)
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                if "serviceAccountToken" in source:
                    spec = source["serviceAccountToken"]
                    token = create_service_account_token(
                        self.api, self.namespace, self.pod["spec"]["serviceAccountName"],
                        audiences=[spec["audience"]] if spec.get("audience") else None,
                        expiration_seconds=spec.get("expirationSeconds", 3600),
                    )  # fmt: skip
                    _write(target / spec["path"], token.encode())
                elif "configMap" in source:
                    self._config_map(source["configMap"], target)
                else:
                    raise NotImplementedError(f"projected source {sorted(source)}")
        else:
            raise NotImplementedError(f"volume {sorted(volume)}")
        return target

    def _config_map(self, ref: dict[str, Any], target: Path) -> None:
        data = self.core.read_namespaced_config_map(ref["name"], self.namespace).data or {}
        for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
            _write(target / item["path"], data[item["key"]].encode(), 0o444)

    def _secret(self, ref: dict[str, Any], target: Path) -> None:
        data = self.core.read_namespaced_secret(ref["secretName"], self.namespace).data or {}
        for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
            _write(target / item["path"], base64.b64decode(data[item["key"]]), 0o400)

    # --- the container -------------------------------------------------------------------------

    def prepare(self) -> tuple[list[str], dict[str, str]]:
        spec = self.pod["spec"]
        [container] = spec["containers"]
        volumes = {v["name"]: self._volume(v) for v in spec.get("volumes") or []}
        mounts = sorted(
            ((m["mountPath"], volumes[m["name"]]) for m in container.get("volumeMounts") or []),
            key=lambda pair: -len(pair[0]),
        )

        def local(value: str) -> str:
            for mount_path, path in mounts:
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(path) + value[len(mount_path) :]
            return value

        command = [local(v) for v in [*container.get("command", []), *container.get("args", [])]]
        if command[0] == "moodle-archiver":
            command[0] = str(Path(sys.executable).parent / "moodle-archiver")
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "PYTHONPATH")}
        env.update(
            {e["name"]: local(e["value"]) for e in container.get("env") or [] if "value" in e}
        )
        # What a kubelet points pods at (the Service IP is not routable here).
        env["MAO_KUBE_SERVER"] = self.cluster.server
        return command, env

    def start(self) -> PodPlayer:
        command, env = self.prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._watch = threading.Thread(target=self._watch_deletion, daemon=True)
        self._watch.start()
        return self

    def _watch_deletion(self) -> None:
        while self.proc is not None and self.proc.poll() is None:
            try:
                pod = self.core.read_namespaced_pod(self.name, self.namespace)
                gone = pod.metadata.deletion_timestamp is not None
            except ApiException as exc:
                gone = exc.status == 404
            if gone:
                self.terminated_by_deletion = True
                self.proc.send_signal(signal.SIGTERM)
                return
            time.sleep(0.2)

    def wait(self, timeout: float = 300) -> int:
        assert self.proc is not None
        self.exit_code = self.proc.wait(timeout)
        if not self.terminated_by_deletion:
            self.report_exit(self.exit_code)
        return self.exit_code

    def report_exit(self, code: int) -> None:
        """Tell KWOK how the container ended (it then moves the pod to Succeeded/Failed)."""
        annotations = {
            f"{KWOK}/outcome": "succeed" if code == 0 else "fail",
            f"{KWOK}/exit-code": str(code),
            f"{KWOK}/run-duration": "0s",
        }
        try:
            self.core.patch_namespaced_pod(
                self.name, self.namespace, {"metadata": {"annotations": annotations}}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
