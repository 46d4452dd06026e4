"""Moodle's login redirects never turn a report into a PDF of the login page."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodle_archive_job.render import Renderer, RenderError, RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness, browser_settings
from tests.browser.pdfs import page, pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser

REPORT = "<h1>Original attempt report</h1><p>Question 1: answered.</p>"

# What Moodle's minified core/ajax does when a call answers "servicerequireslogin".
AJAX_MODULE = """
(function () {
  var URL = {relativeUrl: function (path) { return M.cfg.wwwroot + path; }};
  fetch(M.cfg.wwwroot + '/lib/ajax/service.php?sesskey=s3cr3t&info=core_get_string')
    .then(function (r) { return r.json(); })
    .then(function (responses) {
      var exception = responses[0].exception;
      null!==exception&&("servicerequireslogin"!==exception.errorcode?console.log("other")\
:window.location=URL.relativeUrl("/login/index.php"));
    });
})();
"""
LOGIN_REQUIRED = (
    '[{"error": true, "exception": {"errorcode": "servicerequireslogin", '
    '"message": "Course or activity not accessible."}}]'
)


@pytest.fixture
def moodle(server: LoopbackServer) -> LoopbackServer:
    server.serve("/login/index.php", page("Login", "<h1>Log in to the site</h1>"), "text/html")
    server.serve("/lib/ajax/service.php", LOGIN_REQUIRED, "application/json")
    server.serve("/lib/requirejs.php/1/core/ajax.js", AJAX_MODULE, "application/javascript")
    return server


def moodle_page(origin: str, body: str, head: str = "") -> str:
    config = f"<script>var M = {{cfg: {{wwwroot: '{origin}'}}}};</script>"
    return page("Report", body, f'<base href="{origin}">{config}{head}')


def render_with(harness: BrowserHarness, html: str, pdf: Path, **settings: object) -> RenderResult:
    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(html, harness.server.origin, pdf, PaperFormat.A4)

    if not settings:
        assert harness.renderer is not None
        return harness.run(use(harness.renderer))
    return harness.with_renderer(browser_settings(**settings), use)


def assert_report_not_login(result: RenderResult, moodle: LoopbackServer) -> None:
    text = pdf_text(result.pdf_path)
    assert "Original attempt report" in text
    assert "Log in to the site" not in text
    assert moodle.requested("/login/") == []


def test_moodle_ajax_login_redirect_is_patched_out(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    before = len(moodle.requested("/lib/ajax/service.php"))
    head = '<script src="lib/requirejs.php/1/core/ajax.js"></script>'
    html = moodle_page(moodle.origin, REPORT, head)

    result = render_with(harness, html, tmp_path / "r.pdf")

    assert len(moodle.requested("/lib/ajax/service.php")) > before  # the AJAX call did fail
    assert result.patched_scripts == (f"{moodle.origin}/lib/requirejs.php/1/core/ajax.js",)
    assert result.blocked_login_requests == ()
    assert_report_not_login(result, moodle)


def test_other_scripts_pass_through_unchanged(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    moodle.serve(
        "/lib/javascript.php/1/lib/plain.js",
        "document.body.insertAdjacentHTML('beforeend', '<p>script from Moodle ran</p>');",
        "application/javascript",
    )
    html = moodle_page(
        moodle.origin, REPORT + '<script src="lib/javascript.php/1/lib/plain.js"></script>'
    )

    result = render_with(harness, html, tmp_path / "r.pdf")

    assert "script from Moodle ran" in pdf_text(result.pdf_path)
    assert result.patched_scripts == ()


def test_any_other_login_redirect_is_cancelled_in_the_page(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    redirect = "<script>window.location.href = '/login/index.php?reason=timeout';</script>"
    html = moodle_page(moodle.origin, REPORT + redirect)

    result = render_with(harness, html, tmp_path / "r.pdf")

    assert result.blocked_login_requests == (f"{moodle.origin}/login/index.php",)
    assert_report_not_login(result, moodle)


def test_login_requests_are_blocked_and_logged_without_query(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    fetch = (
        "<script>fetch('/login/token.php?username=a&token=s3cr3t').catch(() => "
        "document.body.insertAdjacentHTML('beforeend', '<p>login fetch failed</p>'));</script>"
    )
    html = moodle_page(moodle.origin, REPORT + fetch)

    result = render_with(harness, html, tmp_path / "r.pdf")

    assert result.blocked_login_requests == (f"{moodle.origin}/login/token.php",)
    assert "login fetch failed" in pdf_text(result.pdf_path)
    assert_report_not_login(result, moodle)


def test_without_prevention_a_redirect_fails_the_render(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    # The reference would have printed the login page; here the render fails instead.
    # The hanging image holds the load event, so the redirect comes while readiness is awaited.
    hanging = moodle.hang("/hang/redirect-test.png")
    redirect = (
        f'<img src="{hanging}" alt="">'
        "<script>setTimeout(() => { window.location = '/login/index.php'; }, 50);</script>"
    )
    html = moodle_page(moodle.origin, REPORT + redirect)

    with pytest.raises(RenderError, match="navigated away"):
        render_with(harness, html, tmp_path / "r.pdf", prevent_redirect_to_login=False)
    assert not (tmp_path / "r.pdf").exists()


def test_cacheable_moodle_scripts_are_fetched_once_per_job(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    forever = {"Cache-Control": "public, max-age=31536000, immutable"}
    moodle.serve(
        "/lib/javascript.php/7/lib/cached.js", "var cached = 1;", "text/javascript", 200, forever
    )
    moodle.serve(
        "/lib/javascript.php/-1/lib/fresh.js", "var fresh = 1;", "text/javascript", 200,
        {"Cache-Control": "no-cache, must-revalidate"},
    )  # fmt: skip
    moodle.serve("/lib/requirejs.php/7/core/ajax.js", AJAX_MODULE, "text/javascript", 200, forever)
    head = (
        '<script src="lib/javascript.php/7/lib/cached.js"></script>'
        '<script src="lib/javascript.php/-1/lib/fresh.js"></script>'
        '<script src="lib/requirejs.php/7/core/ajax.js"></script>'
    )
    html = moodle_page(moodle.origin, REPORT, head)

    results = [render_with(harness, html, tmp_path / f"r{n}.pdf") for n in range(3)]

    assert len(moodle.requested("/lib/javascript.php/7/lib/cached.js")) == 1
    assert len(moodle.requested("/lib/javascript.php/-1/lib/fresh.js")) == 3
    assert len(moodle.requested("/lib/requirejs.php/7/core/ajax.js")) == 1
    for result in results:  # patched once, the patched copy served from the cache
        assert result.patched_scripts == (f"{moodle.origin}/lib/requirejs.php/7/core/ajax.js",)
        assert_report_not_login(result, moodle)


def test_the_guard_works_without_the_asset_cache(
    harness: BrowserHarness, moodle: LoopbackServer, tmp_path: Path
) -> None:
    """Without the asset cache only the report, login URLs and Moodle's scripts are paused."""
    head = '<script src="lib/requirejs.php/1/core/ajax.js"></script>'
    html = moodle_page(moodle.origin, REPORT + '<img src="login/logo.php" alt="">', head)

    result = render_with(harness, html, tmp_path / "r.pdf", asset_cache_mib=0)

    assert result.patched_scripts == (f"{moodle.origin}/lib/requirejs.php/1/core/ajax.js",)
    assert result.blocked_login_requests == (f"{moodle.origin}/login/logo.php",)
    assert_report_not_login(result, moodle)
