"""QUIZ_ARCHIVER_SKIP_HTTPS_CERT_VALIDATION, with a Moodle on a self-signed certificate."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from moodle_archive_job.http_session import ExplicitVerifySession
from moodle_archive_job.logs import unregister_secret
from moodle_archive_job.moodle_client import MoodleClient
from moodle_archive_job.render import IncompletePage, Renderer, RenderResult
from moodle_archive_job.task import MoodleEndpoints, PaperFormat
from tests.browser.conftest import NODE_MODULES, BrowserHarness, browser_settings
from tests.browser.pdfs import page, pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser

TOKEN = "c0ffee" * 5 + "00"
SCRIPT = "document.body.insertAdjacentHTML('beforeend', '<p>script over TLS ran</p>');"


@pytest.fixture(scope="module")
def tls_moodle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = LoopbackServer(NODE_MODULES, tls=(cert, key))
    server.serve("/lib/javascript.php/1/lib/tls.js", SCRIPT, "text/javascript")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("skip_validation", [False, True])
def test_self_signed_moodle_needs_skip_https_cert_validation(
    harness: BrowserHarness, tls_moodle: LoopbackServer, tmp_path: Path, skip_validation: bool
) -> None:
    # The page is on the Moodle origin, so its script also goes through the patching route.
    origin = tls_moodle.origin
    script = f'<script src="{origin}/lib/javascript.php/1/lib/tls.js"></script>'
    html = page("TLS", f"<h1>Report</h1>{script}")

    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(html, origin, tmp_path / "t.pdf", PaperFormat.A4)

    settings = browser_settings(skip_https_cert_validation=skip_validation, render_attempts=1)
    if not skip_validation:
        # Never printed without its script: the attempt fails naming it.
        with pytest.raises(IncompletePage, match=rf"^script {re.escape(origin)}/lib/javascript"
                                                 r"\.php/1/lib/tls\.js failed \("):  # fmt: skip
            harness.with_renderer(settings, use)
        assert not (tmp_path / "t.pdf").exists()
        return
    result = harness.with_renderer(settings, use)

    text = pdf_text(result.pdf_path)
    assert "Report" in text
    assert "script over TLS ran" in text


def test_skipping_validation_holds_against_requests_ca_bundle(
    tls_moodle: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests lets REQUESTS_CA_BUNDLE replace a session's verify=False (psf/requests#3829);
    the sessions of the Moodle client and of the asset fetcher keep it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    url = tls_moodle.origin + "/lib/javascript.php/1/lib/tls.js"
    plain = requests.Session()
    plain.verify = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(url, timeout=10)  # the behaviour the session works around

    session = ExplicitVerifySession()
    session.verify = False
    assert session.get(url, timeout=10).text == SCRIPT
    session.verify = True
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url, timeout=10)
    origin = tls_moodle.origin
    endpoints = MoodleEndpoints(base_url=origin, ws_url=f"{origin}/webservice/rest/server.php",
                                upload_url=f"{origin}/webservice/upload.php")  # fmt: skip
    client = MoodleClient(endpoints, TOKEN, verify_tls=False)
    try:
        assert client.session.get(url, timeout=10).text == SCRIPT
    finally:
        client.close()
        unregister_secret(TOKEN)
