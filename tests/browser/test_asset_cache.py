"""Static resources are fetched once per job (one Renderer), whatever the number of attempts
and of pages in flight; per-user, per-request and token-carrying answers never are kept."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from moodle_archive_job.logs import register_secret, unregister_secret
from moodle_archive_job.render import Renderer, RenderResult
from moodle_archive_job.task import PaperFormat
from tests.browser.conftest import NODE_MODULES, BrowserHarness
from tests.browser.pdfs import page, pdf_text
from tests.browser.server import LoopbackServer

pytestmark = pytest.mark.browser

TOKEN = "0123456789abcdef0123456789abcdef"
FOREVER = {"Cache-Control": "public, max-age=31536000, immutable"}
# path -> (body, content type, headers, fetches expected for the whole job)
KEPT = "kept"
FONT = b"font from the MathJax package"
EVERY_TIME = "every time"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


ASSETS: dict[str, tuple[bytes | str, str, dict[str, str], str]] = {
    # Moodle's revisioned URLs: kept without any Cache-Control, as Moodle's revision says.
    "/theme/styles.php/boost/7_8/all": (
        "@font-face { font-family: t; src: url(../../../font.php/boost/core/7/t.woff2); }\n"
        "h1 { font-family: t, sans-serif; color: rgb(10, 20, 30); }",
        "text/css", {}, KEPT,
    ),
    # A real font: Chromium's memory cache keeps no font it could not decode.
    "/theme/font.php/boost/core/7/t.woff2": (FONT, "font/woff2", {}, KEPT),
    "/theme/image.php/boost/core/7/i": (png(), "image/png", {}, KEPT),
    # A fixed URL (MathJax from a CDN): kept because HTTP says so.
    "/cdn/loader.js": (
        "document.body.insertAdjacentHTML('beforeend', '<p>cached script ran</p>');",
        "text/javascript", FOREVER, KEPT,
    ),
    # Not kept: no-store, no freshness, pluginfile, the token in the path or the query.
    "/cdn/no-store.js": ("var noStore = 1;", "text/javascript",
                         {"Cache-Control": "no-store, max-age=600"}, EVERY_TIME),
    "/cdn/no-freshness.js": ("var plain = 1;", "text/javascript", {}, EVERY_TIME),
    "/theme/styles.php/boost/-1/dev": ("p { margin: 1px; }", "text/css",
                                       {"Cache-Control": "no-cache"}, EVERY_TIME),
    "/pluginfile.php/12/question/questiontext/1/1/3/a.png": (png(), "image/png", FOREVER,
                                                            EVERY_TIME),
    f"/theme/image.php/boost/core/7/{TOKEN}": (png(), "image/png", FOREVER, EVERY_TIME),
    "/cdn/query.png": (png(), "image/png", FOREVER, EVERY_TIME),  # asked for with ?token=
}  # fmt: skip

HEAD = (
    '<link rel="stylesheet" href="theme/styles.php/boost/7_8/all">'
    '<link rel="stylesheet" href="theme/styles.php/boost/-1/dev">'
    '<script src="cdn/no-store.js"></script><script src="cdn/no-freshness.js"></script>'
)
BODY = (
    "<h1>Attempt report</h1>"
    '<img src="theme/image.php/boost/core/7/i" alt="">'
    '<img src="pluginfile.php/12/question/questiontext/1/1/3/a.png" alt="">'
    f'<img src="theme/image.php/boost/core/7/{TOKEN}" alt="">'
    f'<img src="cdn/query.png?token={TOKEN}" alt="">'
    '<script src="cdn/loader.js"></script>'
)


@pytest.fixture
def assets(server: LoopbackServer) -> Iterator[LoopbackServer]:
    register_secret(TOKEN)
    for path, (body, content_type, headers, _) in ASSETS.items():
        if body is FONT:
            font = NODE_MODULES / "@mathjax/mathjax-newcm-font/chtml/woff2/mjx-ncm-v.woff2"
            body = font.read_bytes()
        server.serve(path, body, content_type, 200, headers)
    server.delay("/cdn/loader.js", 0.5)  # pages in flight ask for it while it is on its way
    yield server
    server.delays.clear()
    for path in ASSETS:
        del server.canned[path]
    unregister_secret(TOKEN)


def render_batches(
    harness: BrowserHarness, tmp_path: Path, batches: list[range], **settings: object
) -> tuple[list[RenderResult], Renderer]:
    """Each batch's pages in flight at once, one batch after the other, in one job."""
    from tests.browser.conftest import browser_settings

    origin = harness.server.origin
    html = page("Report", BODY, f'<base href="{origin}/">{HEAD}')

    async def use(renderer: Renderer) -> tuple[list[RenderResult], Renderer]:
        results: list[RenderResult] = []
        for names in batches:
            results += await asyncio.gather(
                *(
                    renderer.render_pdf(html, origin, tmp_path / f"{n}.pdf", PaperFormat.A4)
                    for n in names
                )
            )
        return results, renderer

    return harness.with_renderer(browser_settings(), use, **settings)


def test_static_assets_are_fetched_once_per_job(
    harness: BrowserHarness, assets: LoopbackServer, tmp_path: Path
) -> None:
    """Every attempt in a browser context of its own (max_uses=1), so that Chromium's own
    cache, which a context keeps from one attempt to the next, answers nothing here."""
    results, renderer = render_batches(
        harness, tmp_path, [range(3), range(3, 5)], max_uses=1
    )  # three pages in flight at once, and later ones

    for result in results:
        text = pdf_text(result.pdf_path)
        assert "Attempt report" in text
        assert "cached script ran" in text  # the script from memory ran in every page
    for path, (_, _, _, expected) in ASSETS.items():
        fetched = len(assets.requested(path))
        assert fetched == (1 if expected == KEPT else len(results)), (path, fetched)
    assert renderer.assets is not None
    assert renderer.assets.size_bytes > 0
    assert renderer.assets.hits >= 4 * 4  # the four kept assets, for the later four pages


def test_a_reused_context_gets_kept_assets_from_chromiums_cache(
    harness: BrowserHarness, assets: LoopbackServer, tmp_path: Path
) -> None:
    """One context for all attempts (one at a time): the assets kept for the job reach the
    later pages from Chromium's memory cache, without a request for the asset cache (no
    hits), while responses that HTTP lets no cache keep are still fetched for every page."""
    results, renderer = render_batches(harness, tmp_path, [range(1), range(1, 2), range(2, 3)])

    for result in results:
        text = pdf_text(result.pdf_path)
        assert "Attempt report" in text
        assert "cached script ran" in text
    assert renderer.assets is not None
    assert renderer.assets.hits == 0
    for path in ("/cdn/loader.js", "/theme/styles.php/boost/7_8/all",
                 "/theme/image.php/boost/core/7/i"):  # fmt: skip
        assert len(assets.requested(path)) == 1, path
    for path in ("/cdn/no-store.js", "/cdn/no-freshness.js", "/theme/styles.php/boost/-1/dev"):
        assert len(assets.requested(path)) == 3, path


def test_without_the_cache_every_attempt_fetches_again(
    harness: BrowserHarness, assets: LoopbackServer, tmp_path: Path
) -> None:
    from tests.browser.conftest import browser_settings

    html = page("Report", BODY, f'<base href="{assets.origin}/">{HEAD}')

    async def two(renderer: object) -> None:
        for n in range(2):
            await renderer.render_pdf(  # type: ignore[attr-defined]
                html, assets.origin, tmp_path / f"{n}.pdf", PaperFormat.A4
            )

    harness.with_renderer(browser_settings(asset_cache_mib=0), two)

    assert len(assets.requested("/theme/styles.php/boost/7_8/all")) == 2
    assert len(assets.requested("/cdn/loader.js")) == 2
