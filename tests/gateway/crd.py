"""Install the ArchiveJob CRD into a (test) cluster and wait until it is served."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "archivejobs.moodlearchiver.io.yaml"


def install_archivejob_crd(api: client.ApiClient, timeout: float = 60.0) -> None:
    """Create or update the CRD from crds/, then wait for Established and for it to serve."""
    body = yaml.safe_load(CRD_PATH.read_text())
    ext = client.ApiextensionsV1Api(api)
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while True:
        crd = ext.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            try:
                custom.list_cluster_custom_object("moodlearchiver.io", "v1alpha1", "archivejobs")
                return
            except ApiException as exc:
                if exc.status != 404:
                    raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {name} not established: {conditions}")
        time.sleep(0.2)
