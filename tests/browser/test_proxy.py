"""Rendering through QUIZ_ARCHIVER_PROXY_SERVER_URL with credentials: the runner's own
interception answers the proxy's challenge (interceptor.py), so Chromium's cache stays on,
and the asset fetcher sends http:// requests as a browser does, not through a tunnel."""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from moodle_archive_job.render import Renderer, RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness, browser_settings
from tests.browser.pdfs import TINY_PNG, page, pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser

USER, PASSWORD = "archiver", "s3cret:pw"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
               "te", "trailers", "transfer-encoding", "upgrade"}  # fmt: skip


class AuthProxy:
    """A forward proxy on 127.0.0.1 that wants Basic credentials and forwards plain requests
    (absolute URIs) to 127.0.0.1; like Squid by default, it refuses CONNECT to ports other
    than 443, which Playwright's own fetch would have asked for even for http:// URLs."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []  # paths forwarded with the right credentials
        self.tunnels = 0  # CONNECTs asked for (and refused)
        self.challenged = 0
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _authorized(self) -> bool:
                if self.headers.get("Proxy-Authorization") == expected:
                    return True
                proxy.challenged += 1
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_CONNECT(self) -> None:
                # Like Squid's default for any port but 443 (these are all plain http://).
                proxy.tunnels += 1
                self.send_error(403, "CONNECT to this port is not allowed")

            def _relay(self) -> None:
                target = urlsplit(self.path)
                if not self._authorized():
                    return
                if target.hostname != "127.0.0.1" or target.port is None:
                    self.send_error(403)  # loopback only
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request(self.command, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                proxy.forwarded.append(target.path)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = _relay

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{USER}:{PASSWORD.replace(':', '%3A')}@127.0.0.1:{self._httpd.server_port}"

    def __enter__(self) -> AuthProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


@pytest.fixture
def proxy() -> Iterator[AuthProxy]:
    with AuthProxy() as running:
        yield running


def test_pages_and_assets_go_through_a_proxy_with_credentials(
    harness: BrowserHarness, server: LoopbackServer, proxy: AuthProxy, tmp_path: Path
) -> None:
    styles = "/theme/styles.php/proxied/77/all"  # revisioned: kept by the asset cache
    server.serve(styles, "h1 { color: rgb(10, 20, 30); }", "text/css")
    server.serve("/proxied/plain.js", "document.body.insertAdjacentHTML('beforeend', "
                 "'<p>script via the proxy ran</p>');", "text/javascript")  # fmt: skip
    # Never fetched by the runner: Chromium asks for it itself, and is challenged; it may
    # keep it (HTTP says so), so the second attempt gets it from Chromium's cache.
    image = "/proxied/pluginfile.php/1/a.png"
    server.serve(image, TINY_PNG, "image/png", headers={"Cache-Control": "max-age=3600"})
    head = f'<base href="{server.origin}/"><link rel="stylesheet" href="{styles[1:]}">'
    body = (
        "<h1>Through the proxy</h1><img src='proxied/login/logo.php' alt=''>"
        f"<img src='{image[1:]}' alt=''><script src='proxied/plain.js'></script>"
    )
    html = page("Report", body, head)

    async def two(renderer: Renderer) -> list[RenderResult]:
        return [
            await renderer.render_pdf(html, server.origin, tmp_path / f"{n}.pdf", PaperFormat.A4)
            for n in range(2)
        ]

    results = harness.with_renderer(browser_settings(proxy_server_url=proxy.url), two)

    for result in results:
        text = pdf_text(result.pdf_path)
        assert "Through the proxy" in text
        assert "script via the proxy ran" in text
        assert result.blocked_login_requests == (f"{server.origin}/proxied/login/logo.php",)
    assert proxy.challenged > 0  # Chromium was asked for the credentials, and had them
    assert proxy.forwarded.count(image) == 1  # Chromium's cache is on
    assert proxy.forwarded.count(styles) == 1  # the asset cache's one fetch, not tunnelled
    assert proxy.tunnels == 0
    assert server.requested(styles) == [styles]
    assert server.requested("/proxied/login/") == []
    assert len(server.requested("/proxied/plain.js")) == 2
