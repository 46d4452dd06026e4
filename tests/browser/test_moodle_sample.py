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
  Moodle's pending_js still lists the loader.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from moodle_archive_job.render import RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness
from tests.browser.pdfs import pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser

SAMPLE = Path(__file__).parents[1] / "fixtures" / "moodle-5.0" / "moodle-5.0-attempt-report.html"
SAMPLE_ORIGIN = "http://127.0.0.1:8080"
REVISION = "1795832315"

JAVASCRIPT_STATIC = """
M.util = M.util || {};
M.util.pending_js = [];
M.util.js_pending = function (id) {
  if (typeof id !== 'undefined') { M.util.pending_js.push(id); }
  return id;
};
M.util.js_complete = function (id) {
  var at = M.util.pending_js.indexOf(id);
  if (at >= 0) { M.util.pending_js.splice(at, 1); }
};
M.util.help_popups = {setup: function () {}};
"""

REQUIRE_STAND_IN = """
(function () {
  var modules = {
    'core/first': {},
    'filter_mathjaxloader/loader': {
      configure: function (params) {
        var script = document.createElement('script');
        script.type = 'text/javascript';
        script.src = params.mathjaxurl;
        document.getElementsByTagName('head')[0].appendChild(script);
      }
    }
  };
  window.define = function () {};
  window.require = function (names, callback) {
    // Modules arrive later, one request each; unknown ones never do (like a 404 in RequireJS
    // with waitSeconds 0).
    setTimeout(function () {
      for (var i = 0; i < names.length; i++) {
        if (!(names[i] in modules)) { return; }
      }
      if (callback) { callback.apply(null, names.map(function (n) { return modules[n]; })); }
    }, 300);
  };
})();
"""


def sample_html(origin: str) -> str:
    html = SAMPLE.read_text("utf-8")
    assert SAMPLE_ORIGIN in html
    escaped = SAMPLE_ORIGIN.replace("/", "\\/")
    return html.replace(SAMPLE_ORIGIN, origin).replace(escaped, origin.replace("/", "\\/"))


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
def moodle_stand_in(server: LoopbackServer) -> LoopbackServer:
    base = f"/lib/javascript.php/{REVISION}/lib"
    server.serve(f"{base}/javascript-static.js", JAVASCRIPT_STATIC, "application/javascript")
    server.serve(f"{base}/requirejs/require.min.js", REQUIRE_STAND_IN, "application/javascript")
    yield server
    server.canned.clear()


def test_sample_renders_offline_with_formulas_as_tex(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    result = render_sample(harness, tmp_path / "sample.pdf")

    text = pdf_text(result.pdf_path)
    assert_report_text(text)
    assert r"\frac{a}{b}" in text
    assert result.ready_state == "ready"
    assert any(m.startswith("mathjax-not-found") for m in result.readiness_markers)
    assert result.timings["ready"] < 3


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
