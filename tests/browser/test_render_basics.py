"""Report HTML in, PDF out: text, paper sizes, concurrency, demo mode."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from moodle_archive_job.render import Renderer, RenderError, RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness, browser_settings
from tests.browser.pdfs import page, page_sizes, pdf_text

pytestmark = pytest.mark.browser

MM = 72 / 25.4
# Written out independently of the renderer's table: ISO 216 and ANSI sizes in points.
EXPECTED_POINTS = {
    PaperFormat.A0: (841 * MM, 1189 * MM),
    PaperFormat.A1: (594 * MM, 841 * MM),
    PaperFormat.A2: (420 * MM, 594 * MM),
    PaperFormat.A3: (297 * MM, 420 * MM),
    PaperFormat.A4: (210 * MM, 297 * MM),
    PaperFormat.A5: (148 * MM, 210 * MM),
    PaperFormat.A6: (105 * MM, 148 * MM),
    PaperFormat.LETTER: (612, 792),
    PaperFormat.LEGAL: (612, 1008),
    PaperFormat.TABLOID: (792, 1224),
    PaperFormat.LEDGER: (1224, 792),
}


def render(
    harness: BrowserHarness, html: str, pdf: Path, paper: PaperFormat = PaperFormat.A4
) -> RenderResult:
    assert harness.renderer is not None
    return harness.run(harness.renderer.render_pdf(html, harness.server.origin, pdf, paper))


def test_pdf_holds_the_page_text(harness: BrowserHarness, tmp_path: Path) -> None:
    answer = "Grüße, naïve café, 3 \u00d7 4"
    html = page("Attempt", f"<h1>Quiz attempt report</h1><p>Answer: {answer}</p>")
    result = render(harness, html, tmp_path / "a.pdf")

    assert result.pdf_path == tmp_path / "a.pdf"
    text = pdf_text(result.pdf_path)
    assert "Quiz attempt report" in text
    assert answer in text
    assert result.ready_state == "ready"
    assert any(m.startswith("mathjax-no-formulas") for m in result.readiness_markers)
    assert set(result.timings) == {"setup", "navigate", "ready", "print"}
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("paper", list(PaperFormat), ids=lambda p: p.value)
def test_paper_format_gives_its_page_size(
    harness: BrowserHarness, tmp_path: Path, paper: PaperFormat
) -> None:
    result = render(harness, page("Size", "<p>size</p>"), tmp_path / "p.pdf", paper)

    (width, height), *_ = page_sizes(result.pdf_path)
    expected_width, expected_height = EXPECTED_POINTS[paper]
    assert width == pytest.approx(expected_width, abs=1.0)
    assert height == pytest.approx(expected_height, abs=1.0)


def test_long_report_spans_pages_of_the_same_size(harness: BrowserHarness, tmp_path: Path) -> None:
    body = "".join(f"<p>Question {i}: the answer was recorded.</p>" for i in range(200))
    result = render(harness, page("Long", body), tmp_path / "long.pdf")

    sizes = page_sizes(result.pdf_path)
    assert len(sizes) > 2
    assert len(set(sizes)) == 1
    text = pdf_text(result.pdf_path)
    assert "Question 0:" in text
    assert "Question 199:" in text


def test_concurrent_renders_on_one_browser(harness: BrowserHarness, tmp_path: Path) -> None:
    assert harness.renderer is not None
    renderer = harness.renderer
    origin = harness.server.origin
    mathjax = f'<script src="{origin}/npm/mathjax3/es5/tex-mml-chtml.js"></script>'

    async def all_at_once() -> list[RenderResult]:
        jobs = []
        for n in range(6):
            formula = f'<p class="filter_mathjaxloader_equation">\\(x_{n}\\)</p>' if n % 2 else ""
            html = page(f"Attempt {n}", f"<h1>Attempt number {n}</h1>{formula}", mathjax)
            jobs.append(renderer.render_pdf(html, origin, tmp_path / f"{n}.pdf", PaperFormat.A4))
        return await asyncio.gather(*jobs)

    results = harness.run(all_at_once())

    for n, result in enumerate(results):
        assert result.pdf_path == tmp_path / f"{n}.pdf"
        text = pdf_text(result.pdf_path)
        assert f"Attempt number {n}" in text
        others = [m for m in range(6) if m != n]
        assert not any(f"Attempt number {m}" in text for m in others)
        assert result.ready_state == "ready"


def test_render_after_a_failed_render_still_works(harness: BrowserHarness, tmp_path: Path) -> None:
    missing_dir = tmp_path / "missing" / "x.pdf"
    with pytest.raises(RenderError, match="could not write the PDF"):
        render(harness, page("A", "<p>a</p>"), missing_dir)

    result = render(harness, page("B", "<p>second page</p>"), tmp_path / "b.pdf")
    assert "second page" in pdf_text(result.pdf_path)


def test_demo_mode_watermarks_every_page(harness: BrowserHarness, tmp_path: Path) -> None:
    body = "<h1>Demo attempt</h1>" + "<p>line</p>" * 150

    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(
            page("Demo", body), harness.server.origin, tmp_path / "d.pdf", PaperFormat.A4
        )

    result = harness.with_renderer(browser_settings(demo_mode=True), use)

    # pdftotext leaves diagonal text out; pypdf reads it.
    pages = [p.extract_text() for p in PdfReader(result.pdf_path).pages]
    assert len(pages) > 1
    assert all("DEMO MODE" in p for p in pages)
    assert "archived in demo mode" in pages[0]
    assert "Demo attempt" in pages[0]


def _first_word_box(pdf: Path) -> tuple[float, float]:
    """(xMin, yMin) in points of the first word pdftotext finds on page 1."""
    done = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "1", str(pdf), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    word = re.search(r'<word xMin="([\d.]+)" yMin="([\d.]+)"', done.stdout)
    assert word is not None, done.stdout[:500]
    return float(word.group(1)), float(word.group(2))


def test_margins_from_settings_on_every_side(harness: BrowserHarness, tmp_path: Path) -> None:
    html = page(
        "Margins",
        "<p style='margin:0'>Topleft</p><p style='margin:0;text-align:right'>Right</p>",
        "<style>html, body { margin: 0; padding: 0; }</style>",
    )

    async def use(renderer: Renderer) -> RenderResult:
        return await renderer.render_pdf(
            html, harness.server.origin, tmp_path / "m.pdf", PaperFormat.A4
        )

    result = harness.with_renderer(browser_settings(report_page_margin="20mm"), use)

    margin = 20 * MM
    x, y = _first_word_box(result.pdf_path)
    assert margin - 1 <= x <= margin + 3
    assert margin - 1 <= y <= margin + 6
    done = subprocess.run(
        ["pdftotext", "-bbox", str(result.pdf_path), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    right = re.search(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)"[^>]*>Right<', done.stdout)
    assert right is not None
    (width, _), *_ = page_sizes(result.pdf_path)
    assert float(right.group(1)) == pytest.approx(width - margin, abs=2.5)


def test_print_media_css_applies_and_css_page_size_is_ignored(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    head = (
        "<style>@page { size: A6 landscape; }"
        "@media print { .screen-only { display: none; } }"
        "@media screen { .print-only { display: none; } }</style>"
    )
    body = "<p class='screen-only'>On screen only</p><p class='print-only'>Printed only</p>"
    result = render(harness, page("Media", body, head), tmp_path / "p.pdf", PaperFormat.A4)

    text = pdf_text(result.pdf_path)
    assert "Printed only" in text
    assert "On screen only" not in text
    (width, height), *_ = page_sizes(result.pdf_path)
    assert (width, height) == pytest.approx(EXPECTED_POINTS[PaperFormat.A4], abs=1.0)
