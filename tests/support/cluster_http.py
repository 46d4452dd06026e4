"""A tiny JSON-over-HTTPS client for the control plane's own start-up checks (no dependencies,
so that `python -m tests.support.localcluster` runs with any Python 3.11)."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from tests.support.cluster_pki import CertKey


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


def get_ok(url: str, *, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    """True when GET url answers 200 (any error counts as not yet)."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def insecure_context() -> ssl.SSLContext:
    """For the health endpoints of components with self-signed serving certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class AdminApi:
    """Requests to the API server as the admin user (client certificate)."""

    def __init__(self, server: str, ca_cert: str, client: CertKey) -> None:
        self.netloc = urlsplit(server).netloc
        self.ctx = ssl.create_default_context(cafile=ca_cert)
        self.ctx.load_cert_chain(str(client.cert), str(client.key))

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        conn = http.client.HTTPSConnection(self.netloc, timeout=timeout, context=self.ctx)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read().decode(errors="replace")
        finally:
            conn.close()
        if resp.status >= 300:
            raise ApiError(resp.status, data)
        return json.loads(data) if data else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def ready(self) -> bool:
        return get_ok(f"https://{self.netloc}/readyz", ctx=self.ctx)
