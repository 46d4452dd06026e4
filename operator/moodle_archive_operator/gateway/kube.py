"""The gateway's access to the API server: raw JSON calls over the official client's pool.

Blocking calls run in worker threads; each has its own timeout. Errors are reduced
to `KubeError(status, reason)`: error bodies are never kept, logged or re-raised,
and the answer of a Secret call is not even parsed (it might echo the token).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import kubernetes
import urllib3
from kubernetes.client import ApiClient, Configuration

from ..archivejob import GROUP, LABEL_FINISHED, PLURAL, VERSION
from .kubeerror import KubeError
from .watchstream import watch_stream

T = TypeVar("T")

# Lists only ArchiveJobs not yet labelled final by the operator (absent label matches).
LIVE_SELECTOR = f"{LABEL_FINISHED}!=true"


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


class _RawHttp:
    """JSON calls through the official client's connection pool and credentials.

    The generated API methods validate every argument with pydantic and walk every
    body and answer through their model layer; this path skips both (a few ms of CPU
    per call, see bench/gateway_bench.py) and keeps the client's TLS setup and its
    token refresh (`param_serialize` applies the current credentials).
    """

    def __init__(self, api_client: ApiClient) -> None:
        self._client = api_client
        self._pool = api_client.rest_client.pool_manager

    def open(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        timeout: urllib3.Timeout,
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        method, url, headers, _, _ = self._client.param_serialize(
            method, path, query_params=query, header_params=headers, auth_settings=["BearerToken"]
        )
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        try:
            response = self._pool.request(
                method, url, body=data, headers=headers, timeout=timeout, preload_content=False
            )
        except Exception as exc:  # transport errors: timeouts, refused connections
            raise KubeError(None, type(exc).__name__) from None
        if response.status >= 400:
            _discard(response)  # an error body may echo what was sent: never kept
            raise KubeError(response.status, response.reason or "error")
        return response

    def call(
        self,
        method: str,
        path: str,
        timeout: float,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        want_answer: bool = True,
    ) -> Any:
        response = self.open(method, path, query=query, body=body, timeout=_total(timeout))
        try:
            data = response.read()
        except Exception as exc:
            raise KubeError(None, type(exc).__name__) from None
        finally:
            response.release_conn()
        return json.loads(data) if want_answer else None


def _total(timeout: float) -> urllib3.Timeout:
    return urllib3.Timeout(total=timeout)


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Read and drop an answer so its connection returns to the pool."""
    with suppress(Exception):
        response.read()
    response.release_conn()


class KubernetesApi:
    """`KubeApi` (and the watch source of `LiveJobCache`) over the `kubernetes` client's pool."""

    def __init__(self, namespace: str, api_client: ApiClient, pool_size: int = 32) -> None:
        self.namespace = namespace
        self._client = api_client
        self._http = _RawHttp(api_client)
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="kube-api")
        ns = quote(namespace, safe="")
        self._archivejobs = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}"
        self._secrets = f"/api/v1/namespaces/{ns}/secrets"
        self._events = f"/api/v1/namespaces/{ns}/events"

    @classmethod
    def from_environment(cls, namespace: str) -> KubernetesApi:
        return cls(namespace, make_api_client())

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()

    async def _run(self, fn: Callable[[], T]) -> T:
        # A plain executor (anyio's to_thread costs more per call). A call whose caller is
        # cancelled still completes in its thread: a token Secret created after its
        # ArchiveJob was rolled back goes with it (garbage collection of owned objects).
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def list_archivejobs(self, timeout: float) -> list[dict[str, Any]]:
        items, _ = await self.list_archivejobs_versioned(timeout)
        return items

    async def list_archivejobs_versioned(self, timeout: float) -> tuple[list[dict[str, Any]], str]:
        """Live ArchiveJobs and the list's resourceVersion (where a watch may start)."""
        answer = await self._run(
            lambda: self._http.call(
                "GET", self._archivejobs, timeout, query=[("labelSelector", LIVE_SELECTOR)]
            )
        )
        version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        return list(answer.get("items") or []), version

    def watch_archivejobs(
        self, resource_version: str, timeout_sec: int
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events of live ArchiveJobs after `resource_version` (bookmarks included).

        Ends when the server closes the watch; raises `KubeError` (410 when the
        version is too old to resume from).
        """
        query = [
            ("labelSelector", LIVE_SELECTOR),
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_sec)),
        ]
        timeout = urllib3.Timeout(connect=5.0, read=timeout_sec + 30.0)
        return watch_stream(lambda: self._http.open("GET", self._archivejobs, query=query,
                                                    timeout=timeout))

    async def get_archivejob(self, name: str, timeout: float) -> dict[str, Any] | None:
        try:
            return await self._run(
                lambda: self._http.call("GET", f"{self._archivejobs}/{quote(name)}", timeout)
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_archivejob(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return await self._run(
            lambda: self._http.call("POST", self._archivejobs, timeout, body=body)
        )

    async def delete_archivejob(self, name: str, timeout: float) -> None:
        options = {"propagationPolicy": "Background"}
        try:
            await self._run(
                lambda: self._http.call(
                    "DELETE", f"{self._archivejobs}/{quote(name)}", timeout,
                    body=options, want_answer=False,
                )
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def create_secret(self, body: dict[str, Any], timeout: float) -> None:
        # The answer echoes the Secret's data: it is not even parsed.
        await self._run(
            lambda: self._http.call("POST", self._secrets, timeout, body=body, want_answer=False)
        )

    async def delete_secret(self, name: str, timeout: float) -> None:
        try:
            await self._run(
                lambda: self._http.call(
                    "DELETE", f"{self._secrets}/{quote(name)}", timeout, want_answer=False
                )
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def create_event(self, body: dict[str, Any], timeout: float) -> None:
        await self._run(
            lambda: self._http.call("POST", self._events, timeout, body=body, want_answer=False)
        )
