"""Pure builders of the small per-job objects: ServiceAccount, Role, RoleBinding, task ConfigMap.

Each takes the ArchiveJob as the API server returned it (its uid is needed for the
owner reference) and returns a manifest dict; nothing here talks to the API server.
"""

from __future__ import annotations

from typing import Any

from ..archivejob import GROUP, PLURAL, ArchiveJobSpec, owner_reference, task_from_spec
from .naming import child_annotations, child_labels, child_name

TASK_KEY = "task.json"


def child_metadata(archivejob: dict[str, Any]) -> dict[str, Any]:
    meta = archivejob["metadata"]
    return {
        "name": child_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": child_labels(archivejob),
        "annotations": child_annotations(archivejob),
        "ownerReferences": [owner_reference(archivejob)],
    }


def build_service_account(archivejob: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(archivejob),
        # The pod mounts an explicit projected token; nothing is mounted by default.
        "automountServiceAccountToken": False,
    }


def build_role(archivejob: dict[str, Any]) -> dict[str, Any]:
    """Exactly: get and patch the status of this one ArchiveJob."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(archivejob),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [archivejob["metadata"]["name"]],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_role_binding(archivejob: dict[str, Any]) -> dict[str, Any]:
    meta = child_metadata(archivejob)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
        "subjects": [
            {"kind": "ServiceAccount", "name": meta["name"], "namespace": meta["namespace"]}
        ],
    }


def task_json(archivejob: dict[str, Any]) -> str:
    """The job's input contract (ArchiveTask JSON) from the ArchiveJob's spec."""
    spec = ArchiveJobSpec.model_validate(archivejob["spec"])
    return task_from_spec(spec).model_dump_json()


def build_task_config_map(archivejob: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(archivejob),
        "immutable": True,
        "data": {TASK_KEY: task_json(archivejob)},
    }
