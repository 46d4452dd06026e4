"""A real dynamic PersistentVolume provisioner for the real node: rancher's local-path-provisioner
(the one kind uses), built from its Go module by `make cluster-tools`, run as a host process
against the local control plane, with the StorageClass `local-path` (WaitForFirstConsumer).

How it provisions: when the scheduler has picked the node for a pod whose claim is of class
`local-path`, the provisioner starts a helper pod on that node (the locally built Debian base
image, which has a shell; `imagePullPolicy: Never`) that makes the claim's directory below
`data_dir` on the host, and then creates a hostPath PersistentVolume with node affinity to that
node. Deleting the claim runs the helper pod again to remove the directory.

Its objects: the namespace `local-path-storage` (helper pods; no Pod Security enforcement), the
helper pods' ServiceAccount, the ConfigMap with the setup and teardown scripts the helper pod
mounts, and the StorageClass. The provisioner uses the admin kubeconfig (a local test cluster).
"""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.cluster_env import require_tools
from tests.support.cluster_procs import Supervisor

PROVISIONER_NAME = "rancher.io/local-path"
STORAGE_CLASS = "local-path"
NAMESPACE = "local-path-storage"
SERVICE_ACCOUNT = "local-path-provisioner-service-account"
CONFIG_MAP = "local-path-config"
SETUP_SCRIPT = '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n'
TEARDOWN_SCRIPT = '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n'


def helper_pod_manifest(image: str) -> dict:
    """The provisioner's template of its helper pod (it adds the command, volumes, node)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "containers": [
                {"name": "helper-pod", "image": image, "imagePullPolicy": "Never"}
            ],
            # The real node's CNI network is loopback only: its pods use the host's network.
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 1,
        },
    }


def storage_class() -> dict:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": PROVISIONER_NAME,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    }


class LocalPathProvisioner:
    """The provisioner process and its cluster objects, for one node's run directory."""

    def __init__(
        self, kubeconfig: Path, run_dir: Path, helper_image: str, *, die_with_parent: bool
    ) -> None:
        self.kubeconfig = kubeconfig
        self.run_dir = run_dir
        self.helper_image = helper_image
        self.data_dir = run_dir / "volumes"
        self._supervisor = Supervisor(run_dir / "proc", die_with_parent=die_with_parent)

    @property
    def log(self) -> Path:
        return self.run_dir / "proc" / "logs" / "local-path-provisioner.log"

    def start(self) -> None:
        binary = require_tools(("local-path-provisioner",))["local-path-provisioner"]
        (self.run_dir / "proc").mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.run_dir / "config.json"
        conf.write_text(json.dumps({
            "nodePathMap": [
                {"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(self.data_dir)]}
            ],
            "cmdTimeoutSeconds": 120,
        }, indent=1))  # fmt: skip
        helper = self.run_dir / "helper-pod.json"
        helper.write_text(json.dumps(helper_pod_manifest(self.helper_image), indent=1))
        self._create_objects()
        self._supervisor.start("local-path-provisioner", [
            str(binary), "start",
            f"--kubeconfig={self.kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--provisioner-name={PROVISIONER_NAME}",
            f"--config={conf}",
            f"--helper-pod-file={helper}",
            f"--helper-image={self.helper_image}",
            f"--configmap-name={CONFIG_MAP}",
            f"--service-account-name={SERVICE_ACCOUNT}",
            "--worker-threads=2",
        ])  # fmt: skip

    def check(self) -> None:
        self._supervisor.check()

    def stop(self) -> None:
        (self.run_dir / "proc").mkdir(parents=True, exist_ok=True)
        self._supervisor.stop_all(grace_seconds=5)

    def _create_objects(self) -> None:
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        core = client.CoreV1Api(api)
        objects = [
            (core.create_namespace, {"metadata": {"name": NAMESPACE}}),
            (
                lambda body: core.create_namespaced_service_account(NAMESPACE, body),
                {"metadata": {"name": SERVICE_ACCOUNT}, "automountServiceAccountToken": False},
            ),
            (
                lambda body: core.create_namespaced_config_map(NAMESPACE, body),
                {
                    "metadata": {"name": CONFIG_MAP},
                    "data": {"setup": SETUP_SCRIPT, "teardown": TEARDOWN_SCRIPT},
                },
            ),
            (client.StorageV1Api(api).create_storage_class, storage_class()),
        ]
        for create, body in objects:
            try:
                create(body)
            except ApiException as err:
                if err.status != 409:
                    raise
