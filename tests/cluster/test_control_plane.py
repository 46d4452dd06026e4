"""Proof that the local control plane is the real thing: the real Job controller, garbage
collector, TTL-after-finished controller, RBAC authorizer and TokenRequest API at work, with
KWOK playing the pods (see cluster/kwok/pod-stages.yaml for the annotations)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.cluster_fixtures import client_for_token, eventually
from tests.support.kubeapi import read_or_none

pytestmark = pytest.mark.cluster

SIM = "kwok.moodlearchiver.io"
CRD_GROUP = "test.moodlearchiver.io"


def _job(
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    deadline: int | None = None,
    ttl: int | None = None,
) -> client.V1Job:
    pod = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(annotations=annotations or {}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="main", image="moodle-archive-job:test")],
        ),
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            template=pod,
            backoff_limit=0,
            active_deadline_seconds=deadline,
            ttl_seconds_after_finished=ttl,
        ),
    )


def _condition(job: client.V1Job, kind: str) -> client.V1JobCondition | None:
    for cond in (job.status and job.status.conditions) or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def _job_pods(core: client.CoreV1Api, namespace: str, job: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def _status_managers(job: client.V1Job) -> set[str]:
    return {
        entry.manager
        for entry in job.metadata.managed_fields or []
        if entry.subresource == "status"
    }


def test_job_pod_goes_pending_running_succeeded(api_client: client.ApiClient, namespace: str):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    batch.create_namespaced_job(namespace, _job("ok", annotations={f"{SIM}/run-duration": "2s"}))

    def running_pod() -> client.V1Pod | None:
        pods = _job_pods(core, namespace, "ok")
        return next((p for p in pods if p.status.phase == "Running"), None)

    pod = eventually(running_pod, what="the Job's pod to run")
    assert pod.spec.node_name.startswith("kwok-node-"), "scheduled by kube-scheduler"
    job = eventually(
        lambda: _condition(batch.read_namespaced_job("ok", namespace), "Complete") and
        batch.read_namespaced_job("ok", namespace),
        what="the Job to complete",
    )  # fmt: skip
    assert job.status.succeeded == 1
    pod = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert pod.status.phase == "Succeeded"


def test_failure_is_injected_by_annotation(api_client: client.ApiClient, namespace: str):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    annotations = {f"{SIM}/outcome": "fail", f"{SIM}/exit-code": "42", f"{SIM}/reason": "Boom"}
    batch.create_namespaced_job(namespace, _job("bad", annotations=annotations))
    failed = eventually(
        lambda: _condition(batch.read_namespaced_job("bad", namespace), "Failed"),
        what="the Job to fail",
    )
    assert failed.reason == "BackoffLimitExceeded"
    (pod,) = _job_pods(core, namespace, "bad")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 42, "Boom")


def test_deadline_exceeded_is_set_by_the_job_controller(
    api_client: client.ApiClient, namespace: str
):
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = _job("slow", annotations={f"{SIM}/outcome": "run-forever"}, deadline=3)
    batch.create_namespaced_job(namespace, job)
    eventually(
        lambda: any(p.status.phase == "Running" for p in _job_pods(core, namespace, "slow")),
        what="the never-ending pod to run",
    )
    failed = eventually(
        lambda: _condition(batch.read_namespaced_job("slow", namespace), "Failed"),
        what="the Job to fail at its deadline",
    )
    assert failed.reason == "DeadlineExceeded"
    job = batch.read_namespaced_job("slow", namespace)
    assert "kube-controller-manager" in _status_managers(job)
    # the Job controller also ends the pod that would have run forever
    eventually(
        lambda: all(p.status.phase == "Failed" for p in _job_pods(core, namespace, "slow")),
        what="the Job controller to stop the pod",
    )


def test_garbage_collector_deletes_dependents(api_client: client.ApiClient, namespace: str):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    for name in ("dependent-1", "dependent-2"):
        meta = client.V1ObjectMeta(name=name, owner_references=[ref])
        core.create_namespaced_secret(namespace, client.V1Secret(metadata=meta))
    core.delete_namespaced_config_map("owner", namespace)

    def dependents_left() -> list[str]:
        return [s.metadata.name for s in core.list_namespaced_secret(namespace).items
                if s.metadata.name.startswith("dependent-")]  # fmt: skip

    eventually(lambda: not dependents_left(), what="the garbage collector to delete dependents")


def test_ttl_after_finished_deletes_the_job(api_client: client.ApiClient, namespace: str):
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace, _job("short", annotations={f"{SIM}/run-duration": "100ms"}, ttl=1)
    )

    def job_gone() -> bool:
        return read_or_none(lambda: batch.read_namespaced_job("short", namespace)) is None

    eventually(job_gone, what="the TTL-after-finished controller to delete the Job")


# ------------------------------------------------------------------ RBAC with a test CRD

OPEN_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{CRD_GROUP}"},
    "spec": {
        "group": CRD_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": OPEN_OBJECT, "status": OPEN_OBJECT},
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def widget_crd(api_client: client.ApiClient) -> str:
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as err:
        if err.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    eventually(established, what="the Widget CRD to be established")
    return "widgets"


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _forbidden(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except ApiException as err:
        return err.status == 403
    return False


def test_role_with_resource_names_allows_exactly_one_status(
    cluster, api_client: client.ApiClient, namespace: str, widget_crd: str, sa_token
):
    admin = client.CustomObjectsApi(api_client)
    for name in ("mine", "other"):
        body = {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Widget",
                "metadata": {"name": name}, "spec": {"size": 1}}  # fmt: skip
        admin.create_namespaced_custom_object(CRD_GROUP, "v1", namespace, widget_crd, body)
    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="own-status"),
        rules=[client.V1PolicyRule(api_groups=[CRD_GROUP], resources=["widgets/status"],
                                   resource_names=["mine"], verbs=["get", "patch"])],
    ))  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="own-status"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="own-status"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="worker",
                                       namespace=namespace)],
    ))  # fmt: skip

    token = sa_token("worker")
    claims = _jwt_claims(token)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:worker"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"

    worker = client.CustomObjectsApi(client_for_token(cluster, token))
    patch = {"status": {"phase": "rendering"}}
    args = (CRD_GROUP, "v1", namespace, widget_crd)
    result = worker.patch_namespaced_custom_object_status(*args, "mine", patch)
    assert result["status"] == {"phase": "rendering"}
    assert worker.get_namespaced_custom_object_status(*args, "mine")["status"]["phase"]

    assert _forbidden(worker.patch_namespaced_custom_object_status, *args, "other", patch)
    assert _forbidden(worker.patch_namespaced_custom_object, *args, "mine", {"spec": {"size": 9}})
    assert _forbidden(worker.get_namespaced_custom_object, *args, "mine")
    assert _forbidden(worker.list_namespaced_custom_object, *args)
    assert _forbidden(worker.delete_namespaced_custom_object, *args, "mine")
    core_as_worker = client.CoreV1Api(client_for_token(cluster, token))
    assert _forbidden(core_as_worker.list_namespaced_secret, namespace)

    other = admin.get_namespaced_custom_object(*args, "other")
    mine = admin.get_namespaced_custom_object(*args, "mine")
    assert "status" not in other and other["spec"] == {"size": 1}
    assert mine["spec"] == {"size": 1} and mine["status"] == {"phase": "rendering"}
