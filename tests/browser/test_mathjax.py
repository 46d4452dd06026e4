"""The readiness probe with real MathJax 2, 3 and 4, and with MathJax that never arrives."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from moodle_archive_job.render import IncompletePage, ReadinessTimeout, Renderer, RenderResult
from moodle_archive_job.render.renderer import DEFAULT_STALL_GRACE_SEC
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import NODE_MODULES, BrowserHarness, browser_settings
from tests.browser.pdfs import marker_times, page, pdf_text

pytestmark = pytest.mark.browser

FORMULAS = (
    '<div class="filter_mathjaxloader_equation"><p>Display '
    r"$$x^2 + \frac{a}{b} = \sqrt{\alpha_1^2 + \beta}$$ and inline "
    r"\(\int_0^1 e^{-x^2}\,dx\) end.</p></div>"
)
STALL_GRACE_MS = round(DEFAULT_STALL_GRACE_SEC * 1000)
TEX_SOURCE = (r"\frac", r"\sqrt", r"\alpha", r"\int", "$$", r"\(")


def mathjax_head(origin: str, version: int) -> str:
    if version == 2:
        return f'<script src="{origin}/npm/mathjax2/MathJax.js?config=TeX-AMS_HTML"></script>'
    if version == 3:
        return f'<script src="{origin}/npm/mathjax3/es5/tex-mml-chtml.js"></script>'
    # MathJax 4 fetches its font from a CDN unless told otherwise.
    return (
        f"<script>window.MathJax = {{loader: {{paths: {{fonts: '{origin}/npm/@mathjax'}}}}}};"
        f'</script><script src="{origin}/npm/mathjax4/tex-mml-chtml.js"></script>'
    )


def render(harness: BrowserHarness, html: str, pdf: Path) -> RenderResult:
    assert harness.renderer is not None
    return harness.run(
        harness.renderer.render_pdf(html, harness.server.origin, pdf, PaperFormat.A4)
    )


def assert_typeset(text: str) -> None:
    assert "Display" in text
    assert "end." in text
    for source in TEX_SOURCE:
        assert source not in text, f"raw TeX {source!r} in the PDF"
    # MathJax output of \alpha and \beta: Greek letters (MathJax 4 uses the mathematical
    # italic ones, U+1D6FC and U+1D6FD, which NFKC folds to plain alpha and beta).
    folded = unicodedata.normalize("NFKC", text)
    assert "\N{GREEK SMALL LETTER ALPHA}" in folded
    assert "\N{GREEK SMALL LETTER BETA}" in folded


@pytest.mark.parametrize("version", [2, 3, 4])
def test_formulas_come_out_typeset(harness: BrowserHarness, tmp_path: Path, version: int) -> None:
    html = page(f"MathJax {version}", FORMULAS, mathjax_head(harness.server.origin, version))
    result = render(harness, html, tmp_path / "m.pdf")

    assert result.ready_state == "ready"
    assert any(m.startswith(f"mathjax-{version}-typeset ") for m in result.readiness_markers), (
        result.readiness_markers
    )
    assert_typeset(pdf_text(result.pdf_path))


def test_mathjax_injected_like_moodle_loader_is_awaited(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    # filter_mathjaxloader adds the script element from JS, after the page has parsed.
    origin = harness.server.origin
    head = (
        "<script>document.addEventListener('DOMContentLoaded', () => {"
        "const s = document.createElement('script');"
        f"s.src = '{origin}/npm/mathjax3/es5/tex-mml-chtml.js';"
        "document.head.appendChild(s);});</script>"
    )
    result = render(harness, page("Injected", FORMULAS, head), tmp_path / "m.pdf")

    assert_typeset(pdf_text(result.pdf_path))


def test_formulas_without_mathjax_render_at_once(harness: BrowserHarness, tmp_path: Path) -> None:
    result = render(harness, page("No MathJax", FORMULAS), tmp_path / "m.pdf")

    assert result.ready_state == "ready"
    # Decided on evidence, not by the 10 s stall grace.
    assert marker_times(result.readiness_markers)["mathjax-not-found"] < STALL_GRACE_MS
    assert r"\frac" in pdf_text(result.pdf_path)  # nothing typeset it


def render_incomplete(
    harness: BrowserHarness, html: str, pdf: Path, **settings: object
) -> RenderResult:
    """With QUIZ_ARCHIVER_ALLOW_INCOMPLETE_PAGES: printed without what did not load."""

    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(html, harness.server.origin, pdf, PaperFormat.A4)

    values = {"allow_incomplete_pages": True, "render_attempts": 1, **settings}
    return harness.with_renderer(browser_settings(**values), use)


def test_mathjax_missing_on_the_site_does_not_hold_the_render(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    # A 404 is the site's answer: printed with the formulas as TeX.
    src = f"{harness.server.origin}/npm/mathjax3/es5/no-such-file.js"
    head = f'<script async src="{src}"></script>'
    result = render(harness, page("MathJax gone", FORMULAS, head), tmp_path / "m.pdf")

    assert result.ready_state == "ready"
    assert marker_times(result.readiness_markers)["mathjax-not-found"] < STALL_GRACE_MS
    assert "Display" in pdf_text(result.pdf_path)


def test_unreachable_mathjax_fails_the_render(harness: BrowserHarness, tmp_path: Path) -> None:
    # A CDN that cannot be reached (Chromium refuses port 9 outright): never printed as TeX.
    src = "http://127.0.0.1:9/mathjax/es5/tex-mml-chtml.js"
    head = f'<script async src="{src}"></script>'

    async def use(renderer: Renderer) -> RenderResult:
        html = page("MathJax gone", FORMULAS, head)
        return await renderer.render_pdf(html, harness.server.origin, tmp_path / "m.pdf",
                                         PaperFormat.A4)  # fmt: skip

    settings = browser_settings(render_attempts=2, render_retry_backoff_sec=0.1)
    with pytest.raises(IncompletePage, match=rf"^script {re.escape(src)} failed "
                                             r"\((connection refused|port blocked by Chromium)\)$"):
        harness.with_renderer(settings, use)
    assert not (tmp_path / "m.pdf").exists()


def test_unreachable_mathjax_does_not_hold_an_incomplete_render(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    src = "http://127.0.0.1:9/mathjax/es5/tex-mml-chtml.js"
    head = f'<script async src="{src}"></script>'
    result = render_incomplete(harness, page("MathJax gone", FORMULAS, head), tmp_path / "m.pdf")

    assert result.ready_state == "ready"
    assert marker_times(result.readiness_markers)["mathjax-not-found"] < STALL_GRACE_MS
    assert "Display" in pdf_text(result.pdf_path)
    assert result.missing_resources[0].startswith(f"script {src} failed")


def test_hanging_mathjax_is_given_up_after_the_stall_grace(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    src = harness.server.hang("/hang/mathjax/es5/tex-mml-chtml.js")
    head = f'<script async src="{src}"></script>'

    # The default stall grace (10 s), below the readiness and the resource timeout.
    result = render_incomplete(
        harness, page("MathJax hangs", FORMULAS, head), tmp_path / "m.pdf",
        wait_for_navigation_timeout_sec=DEFAULT_STALL_GRACE_SEC + 1,
    )  # fmt: skip

    assert result.ready_state == "ready"
    times = marker_times(result.readiness_markers)
    assert times["mathjax-not-found"] >= STALL_GRACE_MS
    assert times["page-load-incomplete"] >= STALL_GRACE_MS
    assert "Display" in pdf_text(result.pdf_path)
    assert result.missing_resources == (
        f"script {src} timed out after {DEFAULT_STALL_GRACE_SEC + 1:g} s",
    )


NEVER_READY_MATHJAX = (
    "<script>window.MathJax = {version: '3.2.2', "
    "startup: {promise: new Promise(() => {})}};</script>"
)


def test_readiness_timeout_raises(harness: BrowserHarness, tmp_path: Path) -> None:
    settings = browser_settings(wait_for_ready_signal_timeout_sec=2)

    async def use(renderer: Renderer) -> RenderResult:
        html = page("Never ready", FORMULAS, NEVER_READY_MATHJAX)
        return await renderer.render_pdf(
            html, harness.server.origin, tmp_path / "m.pdf", PaperFormat.A4
        )

    with pytest.raises(ReadinessTimeout, match="mathjax"):
        harness.with_renderer(settings, use)
    assert not (tmp_path / "m.pdf").exists()


def test_continue_after_readiness_timeout_renders_anyway(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    settings = browser_settings(
        wait_for_ready_signal_timeout_sec=2, continue_after_ready_signal_timeout=True
    )

    async def use(renderer: Renderer) -> RenderResult:
        html = page("Never ready", FORMULAS, NEVER_READY_MATHJAX)
        return await renderer.render_pdf(
            html, harness.server.origin, tmp_path / "m.pdf", PaperFormat.A4
        )

    result = harness.with_renderer(settings, use)

    assert result.ready_state == "timeout"
    assert "Display" in pdf_text(result.pdf_path)


def test_without_ready_signal_prints_after_load(harness: BrowserHarness, tmp_path: Path) -> None:
    settings = browser_settings(wait_for_ready_signal=False)

    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(
            page("No probe", "<p>printed at load</p>", NEVER_READY_MATHJAX),
            harness.server.origin,
            tmp_path / "m.pdf",
            PaperFormat.A4,
        )

    result = harness.with_renderer(settings, use)

    assert result.ready_state == "skipped"
    assert "printed at load" in pdf_text(result.pdf_path)


def test_mathjax_arriving_after_the_stall_grace_is_never_printed_as_tex(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    # The probe gives up on MathJax after its stall grace (here 1 s) and calls the page ready;
    # the script then arrives (2 s). Printing now would give TeX: the render counts as
    # incomplete and is tried again, and fails when every try is as slow.
    harness.server.delay("/slow/", 2.0)
    src = f"{harness.server.origin}/slow/mathjax3/es5/tex-mml-chtml.js"
    harness.server.serve(
        "/slow/mathjax3/es5/tex-mml-chtml.js",
        (NODE_MODULES / "mathjax3" / "es5" / "tex-mml-chtml.js").read_bytes(),
        "text/javascript",
    )
    html = page("MathJax late", FORMULAS, f'<script async src="{src}"></script>')

    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(html, harness.server.origin, tmp_path / "m.pdf",
                                         PaperFormat.A4)  # fmt: skip

    settings = browser_settings(render_attempts=2, render_retry_backoff_sec=0.1)
    with pytest.raises(IncompletePage, match=rf"^script {re.escape(src)} arrived only after "):
        harness.with_renderer(settings, use, stall_grace_sec=1.0)
    assert not (tmp_path / "m.pdf").exists()
    assert len(harness.server.requested("/slow/mathjax3/")) == 2
