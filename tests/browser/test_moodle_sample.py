"""The real Moodle 5.0 attempt report (tests/fixtures/moodle-5.0) through the renderer.

The sample links Moodle's JS and CSS on http://127.0.0.1:8080; the tests move it to the test
server's origin. Its two formulas are typeset by MathJax 3 loaded the Moodle way: an inline
script calls RequireJS, RequireJS loads filter_mathjaxloader/loader, whose configure() adds
the MathJax script named in its config (/harness-static/mathjax/es5/tex-mml-chtml.js). The
test server has no Moodle, so:

* offline: every Moodle resource answers 404. The page must still render, with its text,
  quickly, and with the formulas left as TeX ("mathjax-not-found");
* Moodle stand-in: tiny replacements for javascript-static.js (M.util with Moodle's
  pending_js bookkeeping) and require.min.js (an AMD loader that knows only core/first and
  filter_mathjaxloader/loader, answers them asynchronously like RequireJS and adds the
  MathJax script like Moodle 5.0's loader). The rest stays 404. This exercises the part of
  the real chain the probe depends on: MathJax arriving late, after the load event, while
  Moodle's pending_js still lists core/first and then the loader.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from moodle_archive_job.render import RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness
from tests.browser.moodle_sample import sample_html, serve_moodle_stand_in
from tests.browser.pdfs import marker_times, pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser


def render_sample(harness: BrowserHarness, pdf: Path) -> RenderResult:
    assert harness.renderer is not None
    html = sample_html(harness.server.origin)
    return harness.run(
        harness.renderer.render_pdf(html, harness.server.origin, pdf, PaperFormat.A4)
    )


def assert_report_text(text: str) -> None:
    assert "Name an amphibian" in text
    assert "Frog is a very good answer" in text
    assert "The correct answer is: frog" in text


@pytest.fixture
def moodle_stand_in(server: LoopbackServer) -> Iterator[LoopbackServer]:
    paths = serve_moodle_stand_in(server)
    yield server
    for path in paths:
        del server.canned[path]


def test_sample_renders_offline_with_formulas_as_tex(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    result = render_sample(harness, tmp_path / "sample.pdf")

    text = pdf_text(result.pdf_path)
    assert_report_text(text)
    assert r"\frac{a}{b}" in text
    assert result.ready_state == "ready"
    # Decided once Moodle's JS had failed to load, not by the 10 s stall grace.
    assert marker_times(result.readiness_markers)["mathjax-not-found"] < 10_000


def test_sample_formulas_are_typeset_by_mathjax_3_via_the_moodle_loader(
    harness: BrowserHarness, moodle_stand_in: LoopbackServer, tmp_path: Path
) -> None:
    result = render_sample(harness, tmp_path / "sample.pdf")

    text = pdf_text(result.pdf_path)
    assert_report_text(text)
    for source in (r"\frac", r"\sqrt", r"\alpha", r"\int", "$$", r"\("):
        assert source not in text
    folded = unicodedata.normalize("NFKC", text)
    assert "\N{GREEK SMALL LETTER ALPHA}" in folded
    assert "\N{INTEGRAL}" in folded
    assert any(m.startswith("mathjax-3-typeset ") for m in result.readiness_markers), (
        result.readiness_markers
    )
    assert moodle_stand_in.requested("/harness-static/mathjax/es5/tex-mml-chtml.js")
