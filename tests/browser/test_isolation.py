"""Attempts rendered one after another in a reused browser context see nothing of each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodle_archive_job.render import Renderer, RenderError, RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import BrowserHarness, browser_settings
from tests.browser.pdfs import TINY_PNG, page, pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser

LEAVE_TRACES = """<script>
document.cookie = "left=by-attempt-a; max-age=3600";
localStorage.setItem("left", "by-attempt-a");
sessionStorage.setItem("left", "by-attempt-a");
window.name = "left-by-attempt-a";
</script>"""
# Writes what it finds into the page, so the PDF tells.
LOOK_FOR_TRACES = """<p id="found"></p><script>
document.getElementById("found").textContent = [
  "cookie=[" + document.cookie + "]",
  "local=[" + (localStorage.getItem("left") || "") + "]",
  "session=[" + (sessionStorage.getItem("left") || "") + "]",
  "name=[" + window.name + "]",
].join(" ");
</script>"""


def _slots(renderer: Renderer) -> list[object]:
    return list(renderer._slots._idle)  # the pool's idle slots: which context is reused


def test_a_reused_context_keeps_no_trace_of_the_last_attempt(
    harness: BrowserHarness, server: LoopbackServer, tmp_path: Path
) -> None:
    """Only Chromium's HTTP cache stays, with what HTTP lets a browser keep: the image that
    may be kept is not asked for again, though its answer set a cookie (which is gone); the
    one that may not be kept is."""
    fresh = server.serve("/isolation/no-store.png", TINY_PNG, "image/png",
                         headers={"Cache-Control": "no-store"})  # fmt: skip
    image = server.serve(
        "/isolation/cached.png",
        TINY_PNG,
        "image/png",
        headers={"Cache-Control": "public, max-age=3600", "Set-Cookie": "img=1; Max-Age=3600"},
    )
    origin = server.origin
    images = f"<img src='{image}'><img src='{fresh}'>"
    first = page("A", f"<h1>Attempt A</h1>{images}{LEAVE_TRACES}")
    second = page("B", f"<h1>Attempt B</h1>{images}{LOOK_FOR_TRACES}")

    async def use(renderer: Renderer) -> tuple[RenderResult, list[object], list[object]]:
        await renderer.render_pdf(first, origin, tmp_path / "a.pdf", PaperFormat.A4)
        after_first = _slots(renderer)
        result = await renderer.render_pdf(second, origin, tmp_path / "b.pdf", PaperFormat.A4)
        return result, after_first, _slots(renderer)

    result, after_first, after_second = harness.with_renderer(browser_settings(), use)

    assert len(after_first) == 1
    assert after_second == after_first  # the same context and page served both attempts
    text = pdf_text(result.pdf_path)
    assert "Attempt B" in text
    assert "cookie=[] local=[] session=[] name=[]" in " ".join(text.split())
    assert len(server.requested("/isolation/cached.png")) == 1
    assert len(server.requested("/isolation/no-store.png")) == 2


def test_a_failed_attempt_closes_its_context(harness: BrowserHarness, tmp_path: Path) -> None:
    origin = harness.server.origin

    async def use(renderer: Renderer) -> tuple[list[object], list[object], str]:
        await renderer.render_pdf(page("A", "<p>a</p>"), origin, tmp_path / "a.pdf",
                                  PaperFormat.A4)
        before = _slots(renderer)
        with pytest.raises(RenderError, match="could not write the PDF"):
            await renderer.render_pdf(page("B", LEAVE_TRACES), origin,
                                      tmp_path / "missing" / "b.pdf", PaperFormat.A4)
        after_failure = _slots(renderer)
        result = await renderer.render_pdf(page("C", LOOK_FOR_TRACES), origin,
                                           tmp_path / "c.pdf", PaperFormat.A4)
        return before, after_failure, pdf_text(result.pdf_path)

    before, after_failure, text = harness.with_renderer(browser_settings(), use)

    assert len(before) == 1
    assert after_failure == []  # not wiped and reused: closed
    assert "cookie=[] local=[] session=[] name=[]" in " ".join(text.split())


def test_a_context_is_replaced_after_its_uses(harness: BrowserHarness, tmp_path: Path) -> None:
    origin = harness.server.origin

    async def use(renderer: Renderer) -> list[list[object]]:
        seen = []
        for n in range(3):
            await renderer.render_pdf(page(f"{n}", f"<p>{n}</p>"), origin,
                                      tmp_path / f"{n}.pdf", PaperFormat.A4)
            seen.append(_slots(renderer))
        return seen

    seen = harness.with_renderer(browser_settings(), use, max_uses=2)

    assert len(seen[0]) == 1
    assert seen[1] == []  # its second use was its last
    assert len(seen[2]) == 1 and seen[2] != seen[0]
