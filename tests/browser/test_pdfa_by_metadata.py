"""PDF/A-3b by metadata alone (pdfa_fixup.py) on what Chromium really writes, checked by
veraPDF (make verapdf): the real Moodle sample, MathJax with its web fonts, images with and
without transparency, links, CJK, emoji and synthetic bold and italic. A page showing the
.notdef glyph is refused and left to Ghostscript."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader

from moodle_archive_job import pdfa_fixup, pdfa_policy
from moodle_archive_job.attempt_outcomes import AttemptFailed, AttemptOutcomes
from moodle_archive_job.pdf_postprocess import convert_to_pdfa, optimize_images, pdfa_problems
from moodle_archive_job.pdfa_checks import check
from moodle_archive_job.pdfa_fixup import Unfixable, make_pdfa_by_metadata
from moodle_archive_job.task import ImageOptimize, PaperFormat
from tests.browser.conftest import BrowserHarness, browser_settings
from tests.browser.moodle_sample import serve_moodle_stand_in
from tests.browser.pdf_pages import pdf_pages
from tests.browser.pdfs import pdf_text
from tests.support import verapdf

pytestmark = [pytest.mark.browser, pytest.mark.pdfa]

VERSION = "9.9.9-test"


@dataclass
class Rendered:
    chromium: dict[str, Path]
    fixed: dict[str, Path]
    refused: dict[str, str]
    verdicts: dict[Path, list[verapdf.Failure]]
    # What the checks refused, updated all the same; and the old (Ghostscript) way.
    forced: Path
    ghostscript: Path

    def failed_rules(self, pdf: Path) -> set[str]:
        return {f"{failure.clause}-{failure.test}" for failure in self.verdicts[pdf]}


@pytest.fixture(scope="module")
def rendered(
    browser_harness: BrowserHarness,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Rendered:
    """Every page rendered, made PDF/A by metadata, and all validated in one veraPDF run."""
    if not verapdf.installed():
        pytest.fail(f"veraPDF {verapdf.VERSION} is not installed: run make verapdf",
                    pytrace=False)  # fmt: skip
    harness = browser_harness
    folder = tmp_path_factory.mktemp("pdfa")
    chromium: dict[str, Path] = {}
    fixed: dict[str, Path] = {}
    refused: dict[str, str] = {}
    paths = serve_moodle_stand_in(harness.server)
    try:
        assert harness.renderer is not None
        for name, html in pdf_pages(harness.server.origin).items():
            pdf = chromium[name] = folder / f"{name}-chromium.pdf"
            harness.run(
                harness.renderer.render_pdf(html, harness.server.origin, pdf, PaperFormat.A4)
            )
            shutil.copyfile(pdf, folder / f"{name}.pdf")
            try:
                make_pdfa_by_metadata(folder / f"{name}.pdf", VERSION)
                fixed[name] = folder / f"{name}.pdf"
            except Unfixable as exc:
                refused[name] = str(exc)
    finally:
        for path in paths:
            del harness.server.canned[path]
    optimised = folder / "images-optimised.pdf"  # pypdf's rewrite (image optimisation) first
    shutil.copyfile(chromium["images"], optimised)
    optimize_images(optimised, ImageOptimize(width=100, height=100, quality=50))
    make_pdfa_by_metadata(optimised, VERSION)
    fixed["images-optimised"] = optimised
    forced = folder / "tofu-forced.pdf"
    shutil.copyfile(chromium["tofu"], forced)
    with monkeypatch_module.context() as patch:
        patch.setattr(pdfa_fixup, "check", lambda _data, _reader: None)
        make_pdfa_by_metadata(forced, VERSION)
    ghostscript = folder / "sample-gs.pdf"
    shutil.copyfile(chromium["sample"], ghostscript)
    gs = shutil.which("gs")
    assert gs is not None
    convert_to_pdfa(ghostscript, gs, 60, VERSION)
    verdicts = verapdf.validate(
        [*fixed.values(), chromium["links"], forced, ghostscript]
    )
    return Rendered(chromium, fixed, refused, verdicts, forced, ghostscript)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize(
    "name", ["sample", "mathjax", "images", "links", "fonts", "images-optimised"]
)
def test_chromium_pdf_becomes_pdfa_3b_by_metadata_alone(name: str, rendered: Rendered) -> None:
    assert name not in rendered.refused, rendered.refused[name]
    fixed = rendered.fixed[name]
    assert pdfa_problems(fixed, VERSION) == []
    assert [str(failure) for failure in rendered.verdicts[fixed]] == []
    if name in rendered.chromium:  # nothing of Chromium's file changed: the update follows it
        assert fixed.read_bytes().startswith(rendered.chromium[name].read_bytes())


def test_the_sample_keeps_its_text_and_formulas(rendered: Rendered) -> None:
    text = pdf_text(rendered.fixed["sample"])
    assert "Frog is a very good answer" in text
    assert "\\(" not in text  # formulas typeset, not TeX


def test_pages_rasterise_exactly_as_chromium_drew_them(rendered: Rendered) -> None:
    for name in ("sample", "images"):
        assert _raster(rendered.fixed[name]) == _raster(rendered.chromium[name]), name


def test_without_the_update_chromium_pdf_is_not_pdfa(rendered: Rendered) -> None:
    """The validator sees what the update adds: the same page without it fails."""
    failed = rendered.failed_rules(rendered.chromium["links"])
    assert {"6.1.3-1", "6.6.2.1-1", "6.2.4.3-2"} <= failed


def test_a_page_showing_notdef_is_refused_as_veraPDF_would(rendered: Rendered) -> None:
    assert "tofu" in rendered.refused
    assert ".notdef glyph (CID 0)" in rendered.refused["tofu"]
    tofu = rendered.chromium["tofu"]
    with pytest.raises(Unfixable, match=r"\.notdef glyph \(CID 0\)"):
        check(tofu.read_bytes(), PdfReader(tofu))
    assert "6.2.11.8-1" in rendered.failed_rules(rendered.forced)


def test_the_policy_hands_a_refused_page_to_ghostscript(
    rendered: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []

    def ghostscript(pdf: Path, *_args: object) -> None:
        calls.append(pdf)

    monkeypatch.setattr(pdfa_policy, "convert_to_pdfa", ghostscript)
    pdf = tmp_path / "tofu.pdf"
    shutil.copyfile(rendered.chromium["tofu"], pdf)
    pdfa_policy.make_pdfa(pdf, 7, browser_settings(), AttemptOutcomes())
    assert calls == [pdf]
    assert pdf.read_bytes() == rendered.chromium["tofu"].read_bytes()


def test_ghostscript_output_of_the_sample_is_pdfa_3b_too(rendered: Rendered) -> None:
    assert [str(failure) for failure in rendered.verdicts[rendered.ghostscript]] == []


def _raster(pdf: Path) -> bytes:
    done = subprocess.run(
        ["pdftoppm", "-r", "30", "-gray", "-f", "1", "-l", "2", str(pdf)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def test_strict_names_both_reasons_when_ghostscript_cannot_either(
    rendered: Rendered, tmp_path: Path
) -> None:
    """The case of issue 12: Ghostscript too refuses CID 0 and falls back to plain PDF."""
    pdf = tmp_path / "tofu.pdf"
    shutil.copyfile(rendered.chromium["tofu"], pdf)
    with pytest.raises(AttemptFailed) as raised:
        pdfa_policy.make_pdfa(pdf, 7, browser_settings(pdfa_mode="strict"), AttemptOutcomes())
    message = str(raised.value)
    assert message.startswith(
        "attempt 7: no PDF/A: page 1: text shows the .notdef glyph (CID 0) of a CIDFont; "
        "Ghostscript did not produce PDF/A-3b"
    )
    assert "CID 0" in message.partition("Ghostscript said:")[2]
