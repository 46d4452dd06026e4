"""The gateway's access to the API server: a thin async wrapper of the official client.

Blocking client calls run in worker threads; each has its own timeout. Errors are
reduced to `KubeError(status, reason)`: response bodies of Secret calls are never
kept, logged or re-raised (they might echo the token).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio
import kubernetes
from kubernetes.client import ApiClient, Configuration, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from ..archivejob import GROUP, LABEL_FINISHED, PLURAL, VERSION

T = TypeVar("T")

# Lists only ArchiveJobs not yet labelled final by the operator (absent label matches).
LIVE_SELECTOR = f"{LABEL_FINISHED}!=true"


class KubeError(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"{status or 'no answer'}: {reason}")
        self.status = status
        self.reason = reason

    @property
    def ambiguous(self) -> bool:
        """The request may have been carried out although it failed (timeout, 5xx)."""
        return self.status is None or self.status >= 500


class KubeApi(Protocol):
    """What the gateway needs from the API server, in the jobs namespace."""

    namespace: str

    async def list_archivejobs(self, timeout: float) -> list[dict[str, Any]]: ...

    async def get_archivejob(self, name: str, timeout: float) -> dict[str, Any] | None: ...

    async def create_archivejob(self, body: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    async def delete_archivejob(self, name: str, timeout: float) -> None: ...

    async def create_secret(self, body: dict[str, Any], timeout: float) -> None: ...

    async def delete_secret(self, name: str, timeout: float) -> None: ...

    async def create_event(self, body: dict[str, Any], timeout: float) -> None: ...


def make_api_client(kubeconfig: str | None = None, pool_size: int = 32) -> ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    cfg = Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return ApiClient(cfg)


def _discard(response: Any) -> None:
    """Read and drop a raw answer so its connection returns to the pool."""
    response.read()
    response.release_conn()


class KubernetesApi:
    """`KubeApi` over the `kubernetes` client."""

    def __init__(self, namespace: str, api_client: ApiClient) -> None:
        self.namespace = namespace
        self._client = api_client
        self._custom = CustomObjectsApi(api_client)
        self._core = CoreV1Api(api_client)

    @classmethod
    def from_environment(cls, namespace: str) -> KubernetesApi:
        return cls(namespace, make_api_client())

    def close(self) -> None:
        self._client.close()

    async def _run(self, fn: Callable[[], T]) -> T:
        def call() -> T:
            try:
                return fn()
            except ApiException as exc:
                raise KubeError(exc.status or None, str(exc.reason or "error")) from None
            except Exception as exc:  # transport errors: timeouts, refused connections
                raise KubeError(None, type(exc).__name__) from None

        return await anyio.to_thread.run_sync(call)

    async def list_archivejobs(self, timeout: float) -> list[dict[str, Any]]:
        result = await self._run(
            lambda: self._custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                label_selector=LIVE_SELECTOR,
                _request_timeout=timeout,
            )
        )
        return list(result.get("items") or [])

    async def get_archivejob(self, name: str, timeout: float) -> dict[str, Any] | None:
        try:
            return await self._run(
                lambda: self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=timeout
                )
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_archivejob(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return await self._run(
            lambda: self._custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=timeout
            )
        )

    async def delete_archivejob(self, name: str, timeout: float) -> None:
        try:
            await self._run(
                lambda: self._custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    name,
                    propagation_policy="Background",
                    _request_timeout=timeout,
                )
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def create_secret(self, body: dict[str, Any], timeout: float) -> None:
        # The answer echoes the Secret's data: do not even deserialize it.
        await self._run(
            lambda: _discard(
                self._core.create_namespaced_secret(
                    self.namespace, body, _preload_content=False, _request_timeout=timeout
                )
            )
        )

    async def delete_secret(self, name: str, timeout: float) -> None:
        try:
            await self._run(
                lambda: _discard(
                    self._core.delete_namespaced_secret(
                        name, self.namespace, _preload_content=False, _request_timeout=timeout
                    )
                )
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def create_event(self, body: dict[str, Any], timeout: float) -> None:
        await self._run(
            lambda: _discard(
                self._core.create_namespaced_event(
                    self.namespace, body, _preload_content=False, _request_timeout=timeout
                )
            )
        )
