"""A tiny HTTP server on 127.0.0.1 for the browser tests.

Serves MathJax 2, 3 and 4 from the npm packages `make setup` installs, answers registered
paths with fixed bodies, lets chosen paths hang until the server stops, answer late
(`delay`) or fail the next few times (`fail_next`), and answers 404 to everything else.
It records every path asked for.
"""

from __future__ import annotations

import mimetypes
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_HANG_LIMIT_SEC = 120


@dataclass(frozen=True)
class Canned:
    body: bytes
    content_type: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


class LoopbackServer:
    def __init__(self, node_modules: Path, tls: tuple[Path, Path] | None = None) -> None:
        """tls: certificate and key files to serve HTTPS with."""
        # URL prefix -> directory
        self.mounts: dict[str, Path] = {
            "/npm/": node_modules,
            # Where the real sample's MathJax filter config points (mathjax 3.2.2, es5 build).
            "/harness-static/mathjax/": node_modules / "mathjax3",
        }
        self.canned: dict[str, Canned] = {}
        self.hanging: set[str] = set()
        self.delays: dict[str, float] = {}  # path prefix -> seconds before the answer
        self.extra_headers: dict[str, dict[str, str]] = {}  # path prefix -> headers (mounts)
        self.failing: dict[str, list[int]] = {}  # path -> [HTTP status, times left]
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)

    def serve(
        self,
        path: str,
        body: str | bytes,
        content_type: str,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.canned[path] = Canned(data, content_type, status, tuple((headers or {}).items()))
        return self.origin + path

    def hang(self, path: str) -> str:
        self.hanging.add(path)
        return self.origin + path

    def delay(self, prefix: str, seconds: float) -> None:
        """Answer paths starting with `prefix` only after `seconds` (a distant server)."""
        self.delays[prefix] = seconds
    def fail_next(self, path: str, times: int, status: int = 503) -> None:
        """Answer the next `times` requests for `path` with `status` (then as registered)."""
        with self._lock:
            self.failing[path] = [status, times]

    def forget_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requested(self, fragment: str) -> list[str]:
        with self._lock:
            return [p for p in self.requests if fragment in p]

    def _lookup(self, path: str) -> Canned | Path | None:
        if path in self.canned:
            return self.canned[path]
        for prefix, directory in self.mounts.items():
            if path.startswith(prefix):
                candidate = (directory / unquote(path[len(prefix) :])).resolve()
                if candidate.is_file() and candidate.is_relative_to(directory.resolve()):
                    return candidate
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server.requests.append(self.path)
                    failing = server.failing.get(path)
                    if failing is not None and failing[1] > 0:
                        failing[1] -= 1
                    else:
                        failing = None
                if path in server.hanging:
                    server._stopping.wait(_HANG_LIMIT_SEC)
                    return
                late = [s for p, s in server.delays.items() if path.startswith(p)]
                if late:
                    server._stopping.wait(max(late))
                if failing is not None:
                    self._send(failing[0], b"unavailable", "text/plain")
                    return
                found = server._lookup(path)
                if found is None:
                    self._send(404, b"not found", "text/plain")
                elif isinstance(found, Canned):
                    self._send(found.status, found.body, found.content_type, found.headers)
                else:
                    kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
                    extra = [
                        item
                        for prefix, headers in server.extra_headers.items()
                        if path.startswith(prefix)
                        for item in headers.items()
                    ]
                    self._send(200, found.read_bytes(), kind, tuple(extra))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # then answer
                self.do_GET()

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: tuple[tuple[str, str], ...] = (),
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
