"""`helm install` into the local control plane (KWOK nodes): the real API server accepts every
object the chart renders, NOTES tell the admin what to do, and each identity may do exactly
what it needs (checked with SubjectAccessReviews, as `kubectl auth can-i --as` does)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.chart.helm import CHART, LINT_VALUES, helm
from tests.support.localcluster import LocalCluster

pytestmark = pytest.mark.cluster


class Release:
    def __init__(self, name: str, namespace: str) -> None:
        self.name, self.namespace = name, namespace
        self.jobs_namespace = f"{namespace}-jobs"
        self.notes = ""

    def sa(self, component: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-{component}"


@pytest.fixture(scope="module")
def release(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    rel = Release(f"chart-{suffix}", f"chart-{suffix}")
    values = tmp_path_factory.mktemp("chart") / "values.yaml"
    values.write_text("gateway:\n  pathPrefix: s3cret\n")
    kubeconfig = str(cluster.kubeconfig)
    done = helm(
        "install",
        rel.name,
        str(CHART),
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        rel.namespace,
        "--create-namespace",
        "--values",
        str(LINT_VALUES),
        "--values",
        str(values),
    )
    rel.notes = done.stdout
    try:
        yield rel
    finally:
        helm(
            "uninstall",
            rel.name,
            "--kubeconfig",
            kubeconfig,
            "--namespace",
            rel.namespace,
            "--wait",
            "--timeout",
            "120s",
            check=False,
        )
        client.CoreV1Api(_admin(cluster)).delete_namespace(rel.namespace)


def _admin(cluster: LocalCluster) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def can(
    api: client.ApiClient,
    user: str,
    verb: str,
    resource: str,
    namespace: str | None,
    group: str = "",
    subresource: str = "",
) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                resource=resource,
                namespace=namespace,
                group=group,
                subresource=subresource,
            ),
        )
    )
    answer = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(answer.status.allowed)


def test_every_object_is_accepted_and_notes_guide_the_admin(
    release: Release, api_client: client.ApiClient
) -> None:
    ns = client.CoreV1Api(api_client).read_namespace(release.jobs_namespace)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    apps = client.AppsV1Api(api_client)
    names = {d.metadata.name for d in apps.list_namespaced_deployment(release.namespace).items}
    assert names == {f"{release.name}-gateway", f"{release.name}-operator"}
    policies = client.NetworkingV1Api(api_client).list_namespaced_network_policy(
        release.jobs_namespace
    )
    assert [p.metadata.name for p in policies.items] == [f"{release.name}-job-pods"]
    worker_url = f"http://{release.name}-gateway.{release.namespace}.svc:8080/s3cret"
    assert worker_url in release.notes
    assert f"kubectl get archivejobs -n {release.jobs_namespace}" in release.notes


GATEWAY_ALLOWED = [
    ("create", "archivejobs", "moodlearchiver.io", ""),
    ("list", "archivejobs", "moodlearchiver.io", ""),
    ("watch", "archivejobs", "moodlearchiver.io", ""),
    ("get", "archivejobs", "moodlearchiver.io", ""),
    ("create", "secrets", "", ""),
]
GATEWAY_DENIED = [
    ("get", "secrets", "", ""),
    ("list", "secrets", "", ""),
    ("patch", "archivejobs", "moodlearchiver.io", "status"),
    ("update", "archivejobs", "moodlearchiver.io", ""),
    ("create", "pods", "", ""),
    ("create", "jobs", "batch", ""),
]
OPERATOR_ALLOWED = [
    ("watch", "archivejobs", "moodlearchiver.io", ""),
    ("patch", "archivejobs", "moodlearchiver.io", "status"),
    ("get", "archivejobs", "moodlearchiver.io", "status"),
    ("create", "jobs", "batch", ""),
    ("delete", "jobs", "batch", ""),
    ("watch", "pods", "", ""),
    ("create", "roles", "rbac.authorization.k8s.io", ""),
    ("create", "rolebindings", "rbac.authorization.k8s.io", ""),
    ("create", "serviceaccounts", "", ""),
    ("create", "configmaps", "", ""),
    ("create", "persistentvolumeclaims", "", ""),
    ("delete", "persistentvolumeclaims", "", ""),
    ("get", "secrets", "", ""),
    ("patch", "secrets", "", ""),
    ("delete", "secrets", "", ""),
    ("create", "events", "", ""),
]
OPERATOR_DENIED = [
    ("create", "pods", "", ""),
    ("delete", "pods", "", ""),
    ("create", "secrets", "", ""),
    ("create", "archivejobs", "moodlearchiver.io", ""),
    ("escalate", "roles", "rbac.authorization.k8s.io", ""),
    ("bind", "roles", "rbac.authorization.k8s.io", ""),
    ("create", "serviceaccounts", "", "token"),
    ("update", "persistentvolumeclaims", "", ""),
    ("create", "persistentvolumes", "", ""),
]


@pytest.mark.parametrize("component", ["gateway", "operator"])
def test_least_privilege(release: Release, api_client: client.ApiClient, component: str) -> None:
    user = release.sa(component)
    allowed = GATEWAY_ALLOWED if component == "gateway" else OPERATOR_ALLOWED
    denied = GATEWAY_DENIED if component == "gateway" else OPERATOR_DENIED
    ns = release.jobs_namespace
    for verb, resource, group, sub in allowed:
        assert can(api_client, user, verb, resource, ns, group, sub), (verb, resource, sub)
    for verb, resource, group, sub in denied:
        assert not can(api_client, user, verb, resource, ns, group, sub), (verb, resource, sub)
    # Nothing outside the jobs namespace, nothing cluster-wide.
    for verb, resource, group, sub in allowed:
        assert not can(api_client, user, verb, resource, release.namespace, group, sub)
        assert not can(api_client, user, verb, resource, "default", group, sub)
    assert not can(api_client, user, "list", "nodes", None)
    assert not can(api_client, user, "list", "namespaces", None)
    assert not can(api_client, user, "list", "archivejobs", None, "moodlearchiver.io")


def test_users_with_view_see_archivejobs(release: Release, api_client: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(api_client)
    name = f"viewer-{release.name}"
    rbac.create_namespaced_role_binding(
        release.jobs_namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name="alice", api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )

    def alice_can(verb: str) -> bool:
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user="alice",
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb,
                    resource="archivejobs",
                    group="moodlearchiver.io",
                    namespace=release.jobs_namespace,
                ),
            )
        )
        return bool(
            client.AuthorizationV1Api(api_client)
            .create_subject_access_review(review)
            .status.allowed
        )

    deadline = time.monotonic() + 30  # the aggregation controller fills `view` asynchronously
    while not alice_can("list") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alice_can("list") and alice_can("get") and not alice_can("delete")
