"""The operator's access to the API server: plain-dict REST over the official client's
transport, blocking calls in a thread pool of their own.

Errors become `KubeError(status, reason)`; response bodies are never kept in
errors or logs, except the `message` of the API's Status answer to a refused create
(what an admin must read: the quota, the invalid field), kept as `KubeError.message`
(the operator creates no Secrets, so it holds nothing secret). Secrets are read only
where the token is needed (telling Moodle a final status) and otherwise only as metadata
(`PartialObjectMetadata`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from ..archivejob import GROUP, PLURAL, SECRET_TOKEN_KEY, VERSION

_METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
MERGE_PATCH = "application/merge-patch+json"

# kind -> collection path below /namespaces/{ns}
COLLECTIONS = {
    "ArchiveJob": f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Event": "/api/v1/namespaces/{ns}/events",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


class KubeError(Exception):
    def __init__(self, status: int | None, reason: str, message: str = "") -> None:
        super().__init__(f"{status or 'no answer'}: {reason}")
        self.status = status
        self.reason = reason
        self.message = message


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status object in an error body ("" if there is none)."""
    try:
        status = json.loads(body) if isinstance(body, (str, bytes)) else None
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return message.strip() if isinstance(message, str) else ""


def make_api_client(pool_size: int = 32) -> ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    cfg = Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=cfg)
    else:
        kubernetes.config.load_kube_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return ApiClient(cfg)


class Kube:
    """Namespaced REST calls returning dicts; `None` for 404 where absence is normal."""

    def __init__(self, api: ApiClient, namespace: str, timeout: float, threads: int = 16) -> None:
        self.api = api
        self.namespace = namespace
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()

    # --- transport -----------------------------------------------------------------------------

    def _path(self, kind: str, name: str | None = None, sub: str | None = None) -> str:
        path = COLLECTIONS[kind].format(ns=self.namespace)
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        keep_message: bool = False,
    ) -> Any:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*request, _request_timeout=self.timeout)
            response.read()
        except ApiException as exc:
            message = _status_message(exc.body) if keep_message else ""
            raise KubeError(exc.status or None, str(exc.reason or "error"), message) from None
        except Exception as exc:  # transport: timeouts, refused connections
            raise KubeError(None, type(exc).__name__) from None
        if not 200 <= response.status < 300:
            message = _status_message(response.data) if keep_message else ""
            raise KubeError(response.status, str(response.reason or "error"), message)
        return json.loads(response.data) if response.data else None

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._call(method, path, **kwargs))

    async def _get_or_none(self, path: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return await self.call("GET", path, **kwargs)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def _delete_quietly(self, path: str, propagation: str = "Background") -> bool:
        """Delete; False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            await self.call("DELETE", path, body=body)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- generic -------------------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return await self._get_or_none(self._path(kind, name))

    async def list(
        self, kind: str, label_selector: str = "", field_selector: str = ""
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        result = await self.call("GET", self._path(kind), query=query)
        return list((result or {}).get("items") or [])

    async def list_metadata(
        self, kind: str, label_selector: str = "", field_selector: str = ""
    ) -> list[dict[str, Any]]:
        """Objects as PartialObjectMetadata (for Secrets: without their data)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        if field_selector:
            query.append(("fieldSelector", field_selector))
        result = await self.call("GET", self._path(kind), query=query, accept=_METADATA_LIST)
        return list((result or {}).get("items") or [])

    async def create(self, body: dict[str, Any]) -> bool:
        """Create; False if it already exists (deterministic names make this idempotent).
        A refusal raises KubeError with the API's message."""
        try:
            await self.call("POST", self._path(body["kind"]), body=body, keep_message=True)
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete(self, kind: str, name: str, propagation: str = "Background") -> bool:
        return await self._delete_quietly(self._path(kind, name), propagation)

    # --- ArchiveJobs ---------------------------------------------------------------------------

    async def patch_status(self, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await self.call(
                "PATCH",
                self._path("ArchiveJob", name, "status"),
                body={"status": status},
                content_type=MERGE_PATCH,
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_labels(self, kind: str, name: str, labels: dict[str, str | None]) -> None:
        await self._patch_metadata(kind, name, {"labels": labels})

    async def patch_annotations(
        self, kind: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        await self._patch_metadata(kind, name, {"annotations": annotations})

    async def _patch_metadata(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        """Merge-patch labels or annotations (None removes one); a gone object is no error.
        The answer is only the metadata (for a Secret: not its data)."""
        try:
            await self.call(
                "PATCH",
                self._path(kind, name),
                body={"metadata": metadata},
                content_type=MERGE_PATCH,
                accept=_METADATA_ONLY,
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    # --- Secrets -------------------------------------------------------------------------------

    async def get_metadata(self, kind: str, name: str) -> dict[str, Any] | None:
        """An object as PartialObjectMetadata (for a Secret: without its data)."""
        return await self._get_or_none(self._path(kind, name), accept=_METADATA_ONLY)

    async def secret_exists(self, name: str) -> bool:
        return await self.get_metadata("Secret", name) is not None

    async def read_token(self, name: str) -> str | None:
        """The Moodle token in Secret `name` (None if the Secret or its key is gone)."""
        secret = await self.get("Secret", name)
        encoded = ((secret or {}).get("data") or {}).get(SECRET_TOKEN_KEY)
        if not encoded:
            return None
        return base64.b64decode(encoded).decode("utf-8").strip() or None

    async def create_event(self, body: dict[str, Any]) -> None:
        await self.call("POST", self._path("Event"), body=body)
