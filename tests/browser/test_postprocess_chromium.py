"""Image optimisation and PDF/A on what Chromium really writes (inlined images, web fonts)."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from moodle_archive_job.pdf_postprocess import convert_to_pdfa, optimize_images, pdfa_problems
from moodle_archive_job.task import ImageOptimize, PaperFormat
from tests.browser.conftest import BrowserHarness
from tests.browser.pdfs import page, pdf_text

pytestmark = pytest.mark.browser


def _data_uri(image: Image.Image, kind: str) -> str:
    out = io.BytesIO()
    image.save(out, kind, quality=95) if kind == "JPEG" else image.save(out, kind)
    return f"data:image/{kind.lower()};base64,{base64.b64encode(out.getvalue()).decode()}"


def _xobject_images(pdf: Path) -> list[dict[str, object]]:
    found = []
    for pdf_page in PdfReader(pdf).pages:
        for image in pdf_page.images:
            assert image.indirect_reference is not None
            xobject = image.indirect_reference.get_object()
            found.append(
                {
                    "size": (xobject["/Width"], xobject["/Height"]),
                    "filter": xobject.get("/Filter"),
                    "smask": "/SMask" in xobject,
                }
            )
    return found


def test_rendered_report_optimises_and_becomes_pdfa(
    harness: BrowserHarness, tmp_path: Path
) -> None:
    photo = Image.effect_noise((1600, 1200), 60).convert("RGB")
    logo = Image.new("RGBA", (400, 400), (200, 30, 30, 120))
    mathjax = f'<script src="{harness.server.origin}/npm/mathjax3/es5/tex-mml-chtml.js"></script>'
    body = (
        "<h1>Report with pictures</h1>"
        f'<img src="{_data_uri(photo, "JPEG")}" style="width: 400px">'
        f'<img src="{_data_uri(logo, "PNG")}" style="width: 100px">'
        r'<p class="filter_mathjaxloader_equation">Formula \(\sqrt{\alpha}\) here.</p>'
        r'<p class="filter_mathjaxloader_equation">$$x^2 + \frac{a}{b} = '
        r'\sqrt{\alpha_1^2 + \beta}$$</p>'
    )
    assert harness.renderer is not None
    result = harness.run(
        harness.renderer.render_pdf(
            page("Pictures", body, mathjax), harness.server.origin, tmp_path / "r.pdf",
            PaperFormat.A4,
        )
    )  # fmt: skip
    pdf = result.pdf_path
    before = _xobject_images(pdf)
    assert {"size": (1600, 1200), "filter": "/DCTDecode", "smask": False} in before
    assert any(image["smask"] for image in before)

    optimize_images(pdf, ImageOptimize(width=800, height=800, quality=60))

    after = _xobject_images(pdf)
    assert {"size": (800, 600), "filter": "/DCTDecode", "smask": False} in after
    assert [i for i in after if i["smask"]] == [i for i in before if i["smask"]]

    gs = shutil.which("gs")
    assert gs is not None, "Ghostscript missing (make setup)"
    convert_to_pdfa(pdf, gs, 30, "0.1.0")

    assert pdfa_problems(pdf, "0.1.0") == []
    text = pdf_text(pdf)
    assert "Report with pictures" in text
    assert "Formula" in text
    assert "\u221a" in text  # the square root MathJax drew, still text after Ghostscript
    # Greek letters of a display formula: Ghostscript 10.00's new PDF reader garbles them.
    assert "\u03b1" in text and "\u03b2" in text
