"""The readiness probe's GeoGebra rule, with a stand-in for deployggb.js.

The stand-in behaves like an applet being built: GGBApplet exists, the frame gets class
"jsloaded" after a while, then its content keeps changing for a second and stops.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moodle_archive_job.render import RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness
from tests.browser.pdfs import marker_times, page, pdf_text

pytestmark = pytest.mark.browser

APPLET = """
<script>
window.GGBApplet = function () {};
window.addEventListener('load', () => {
  const frame = document.querySelector('.GeoGebraFrame');
  setTimeout(() => {
    frame.classList.add('jsloaded');
    let step = 0;
    const grow = setInterval(() => {
      step += 1;
      frame.insertAdjacentHTML('beforeend', `<p>applet step ${step}</p>`);
      if (step === 5) { clearInterval(grow); }
    }, 200);
  }, 300);
});
</script>
"""


def test_applet_is_printed_after_it_stopped_changing(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    body = '<h1>GeoGebra question</h1><div class="GeoGebraFrame"></div>'
    assert harness.renderer is not None
    result: RenderResult = harness.run(
        harness.renderer.render_pdf(
            page("GeoGebra", body, APPLET), harness.server.origin, tmp_path / "g.pdf",
            PaperFormat.A4,
        )
    )  # fmt: skip

    assert result.ready_state == "ready"
    markers = marker_times(result.readiness_markers)
    assert "geogebra-loaded" in markers
    # Last change about 300 + 5 * 200 ms after load; ready 2 s of quiet later.
    assert markers["geogebra-ready"] - markers["geogebra-loaded"] >= 2000 + 800
    assert "applet step 5" in pdf_text(result.pdf_path)
