"""pytest fixtures for tests marked `@pytest.mark.cluster` (the local control plane).

- `cluster` (session): a started LocalCluster; KUBECONFIG points at its admin kubeconfig and
  its bin directory (kubectl, helm, ...) is first on PATH while the session runs.
- `api_client` (session): a kubernetes.client.ApiClient for the admin user.
- `namespace` (function): a fresh namespace, deleted after the test.
- `sa_token` (function): make_token(service_account, namespace=None, audiences=None) creates the
  ServiceAccount if needed and returns a token issued by the TokenRequest API.
A missing toolchain fails every cluster test with the reason; it never skips.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.cluster_env import ToolchainMissing, require_tools, tools_bin_dir
from tests.support.cluster_pki import PkiError
from tests.support.cluster_procs import ComponentFailed
from tests.support.localcluster import ClusterError, LocalCluster

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2, what: str
) -> T:
    """Poll probe() until it returns something truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def create_service_account_token(
    api: client.ApiClient,
    namespace: str,
    service_account: str,
    *,
    audiences: list[str] | None = None,
    expiration_seconds: int = 3600,
) -> str:
    """A token for the ServiceAccount, issued by the API server's TokenRequest API."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=audiences or [], expiration_seconds=expiration_seconds
        )
    )
    result = client.CoreV1Api(api).create_namespaced_service_account_token(
        service_account, namespace, request
    )
    return result.status.token


def client_for_token(cluster: LocalCluster, token: str) -> client.ApiClient:
    """An ApiClient that authenticates with a bearer token (e.g. a ServiceAccount's)."""
    conf = client.Configuration()
    conf.host = cluster.server
    conf.ssl_ca_cert = str(cluster.ca_cert)
    conf.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(conf)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    try:
        require_tools()
    except ToolchainMissing as err:
        pytest.fail(f"the local Kubernetes control plane is not available: {err}", pytrace=False)
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
    except (ClusterError, ComponentFailed, PkiError, OSError) as err:
        pytest.fail(f"the local Kubernetes control plane did not start: {err}", pytrace=False)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("KUBECONFIG", str(local.kubeconfig))
            env.setenv("PATH", f"{tools_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
            yield local
    finally:
        local.stop(remove_data=True)


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = _namespace_name(request.node.name)
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={"moodle-archive-operator/test": "true"})
    )
    core.create_namespace(body)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as err:
            if err.status != 404:
                raise


@pytest.fixture
def sa_token(api_client: client.ApiClient, namespace: str) -> Callable[..., str]:
    core = client.CoreV1Api(api_client)

    def make_token(
        service_account: str, namespace_: str | None = None, audiences: list[str] | None = None
    ) -> str:
        ns = namespace_ or namespace
        try:
            core.create_namespaced_service_account(
                ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=service_account))
            )
        except ApiException as err:
            if err.status != 409:
                raise
        return create_service_account_token(api_client, ns, service_account, audiences=audiences)

    return make_token

