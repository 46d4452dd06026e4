"""The real Moodle 5.0 attempt report sample, moved to a test server, and a stand-in for
the two Moodle scripts its MathJax depends on (see test_moodle_sample.py)."""

from __future__ import annotations

from pathlib import Path

from tests.browser.server import LoopbackServer

SAMPLE = Path(__file__).parents[1] / "fixtures" / "moodle-5.0" / "moodle-5.0-attempt-report.html"
SAMPLE_ORIGIN = "http://127.0.0.1:8080"
REVISION = "1795832315"
THEME_PATH = f"/theme/styles.php/boost/{REVISION}_1795832527/all"

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
    return moved_to(html, origin)


def moved_to(text: str, origin: str) -> str:
    r"""`text` (the page, or its web service response) with the sample's origin replaced,
    written plainly, escaped once (http:\/\/...) or twice (a JavaScript string inside JSON,
    http:\\\/\\\/...: MathJax's URL in the response is one)."""
    for escape in ("/", "\\/", "\\\\\\/"):
        text = text.replace(SAMPLE_ORIGIN.replace("/", escape), origin.replace("/", escape))
    return text


# The one rule of the Boost theme that decides the sample's length: without it the ten
# question flag icons (inline SVG) are drawn page-wide and the report takes 25 pages instead of 11.
THEME_STAND_IN = ".questionflag img, img.icon { width: 16px; height: 16px; }\n"


def serve_moodle_stand_in(server: LoopbackServer) -> list[str]:
    """Serve the stand-ins where the sample loads Moodle's files; returns their paths."""
    base = f"/lib/javascript.php/{REVISION}/lib"
    files = {
        f"{base}/javascript-static.js": (JAVASCRIPT_STATIC, "application/javascript"),
        f"{base}/requirejs/require.min.js": (REQUIRE_STAND_IN, "application/javascript"),
        THEME_PATH: (THEME_STAND_IN, "text/css"),
    }
    for path, (body, content_type) in files.items():
        server.serve(path, body, content_type)
    return list(files)
