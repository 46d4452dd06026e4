"""Pages whose stylesheets, fonts or scripts did not load are rendered again, never printed
as they are; a failed render leaves token-free diagnostics."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from moodle_archive_job.logs import register_secret, unregister_secret
from moodle_archive_job.render import IncompletePage, Renderer, RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness, browser_settings
from tests.browser.pdfs import page, pdf_text

pytestmark = pytest.mark.browser

CSS = ".hidden-by-css { display: none; } h1::after { content: ' STYLED'; }"
RESOURCE_TIMEOUT = 4  # seconds; a busy test machine needs more than 2 to load a small page
BODY = "<h1>Attempt report</h1><p class='hidden-by-css'>UNSTYLED LEFTOVER</p>"


def quick(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "wait_for_navigation_timeout_sec": RESOURCE_TIMEOUT,
        "render_attempts": 2,
        "render_retry_backoff_sec": 0.1,
    }
    values.update(overrides)
    return browser_settings(**values)


def render_with(
    harness: BrowserHarness, settings: Any, html: str, pdf: Path, diagnostics: Path | None = None
) -> RenderResult:
    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(
            html, harness.server.origin, pdf, PaperFormat.A4, diagnostics
        )

    return harness.with_renderer(settings, use, stall_grace_sec=1)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique(name: str) -> str:
    return f"/t/{uuid.uuid4().hex[:8]}/{name}"


def test_hanging_stylesheet_is_retried_then_fails_with_the_cause(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    url = harness.server.hang(unique("theme.css"))
    html = page("Hanging CSS", BODY, f'<link rel="stylesheet" href="{url}">')

    with pytest.raises(IncompletePage) as raised:
        render_with(harness, quick(), html, tmp_path / "r.pdf")

    assert str(raised.value) == f"stylesheet {url} timed out after {RESOURCE_TIMEOUT} s"
    assert len(harness.server.requested(url.removeprefix(harness.server.origin))) == 2
    assert not (tmp_path / "r.pdf").exists()


def test_stylesheet_failing_once_is_rendered_again_and_printed_styled(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    path = unique("theme.css")
    url = harness.server.serve(path, CSS, "text/css")
    harness.server.fail_next(path, 1, 503)
    html = page("Flaky CSS", BODY, f'<link rel="stylesheet" href="{url}">')

    result = render_with(harness, quick(), html, tmp_path / "r.pdf")

    text = pdf_text(result.pdf_path)
    assert "STYLED" in text
    assert "UNSTYLED LEFTOVER" not in text
    assert len(harness.server.requested(path)) == 2
    assert result.missing_resources == ()


def test_refused_font_fails_and_allow_incomplete_prints_anyway(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    font = f"http://127.0.0.1:{closed_port()}/fonts/report.woff2"
    head = (
        f"<style>@font-face {{ font-family: R; src: url('{font}'); }} "
        "body { font-family: R, sans-serif; }</style>"
    )
    html = page("Font", BODY, head)

    with pytest.raises(IncompletePage) as raised:
        render_with(harness, quick(), html, tmp_path / "a.pdf")
    assert str(raised.value) == f"font {font} failed (connection refused)"

    result = render_with(harness, quick(allow_incomplete_pages=True), html, tmp_path / "b.pdf")
    assert "Attempt report" in pdf_text(result.pdf_path)
    assert result.missing_resources == (
        f"font {font} failed (connection refused)",
    )


def test_a_missing_stylesheet_is_moodles_answer_not_a_failure(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    url = f"{harness.server.origin}{unique('gone.css')}"  # 404
    html = page("404 CSS", BODY, f'<link rel="stylesheet" href="{url}">')

    result = render_with(harness, quick(), html, tmp_path / "r.pdf")

    assert "Attempt report" in pdf_text(result.pdf_path)


def test_diagnostics_of_a_failed_render_hold_no_token(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex  # what Moodle's web service tokens look like
    register_secret(token)
    try:
        css = harness.server.hang(unique("styles.css"))
        image = f"{harness.server.origin}/pluginfile.php/1/question/x.png?token={token}"
        script = f"{harness.server.origin}{unique('app.js')}?wstoken={token}"
        harness.server.serve(script.split("?")[0].removeprefix(harness.server.origin),
                             f"console.log('loaded with {token}');"
                             f"document.documentElement.dataset.secret = '{token}';",
                             "text/javascript")  # fmt: skip
        head = f'<script src="{script}"></script><link rel="stylesheet" href="{css}?token={token}">'
        html = page("Diag", f"{BODY}<img src='{image}'><a href='{image}'>file</a>", head)
        folder = tmp_path / "diagnostics" / "attempt-7"

        with pytest.raises(IncompletePage, match=r"styles\.css timed out"):
            render_with(harness, quick(render_attempts=1), html, tmp_path / "r.pdf", folder)

        names = {p.name for p in folder.iterdir()}
        assert {"screenshot.png", "page.html", "report.html", "console.txt", "requests.json",
                "reason.txt"} <= names  # fmt: skip
        assert (folder / "screenshot.png").read_bytes().startswith(b"\x89PNG")
        assert "loaded with" in (folder / "console.txt").read_text()
        requests = json.loads((folder / "requests.json").read_text())
        assert any("styles.css timed out" in p for p in requests["problems"])
        assert any("x.png" in r["url"] for r in requests["requests"])
        assert "UNSTYLED LEFTOVER" in (folder / "page.html").read_text()
        for path in folder.iterdir():
            assert token.encode() not in path.read_bytes(), path.name
    finally:
        unregister_secret(token)
