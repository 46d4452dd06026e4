"""Pages whose PDFs exercise what PDF/A and the look of a report depend on: the real Moodle
sample, MathJax with its web fonts, images with and without transparency, links, CJK, emoji
and synthetic bold and italic, and characters no font has (.notdef). Used by the PDF/A tests
and by bench/browser_look.py."""

from __future__ import annotations

import base64
import io

from PIL import Image

from tests.browser.moodle_sample import sample_html
from tests.browser.pdfs import page


def _data_uri(image: Image.Image, kind: str) -> str:
    out = io.BytesIO()
    image.save(out, kind)
    return f"data:image/{kind.lower()};base64,{base64.b64encode(out.getvalue()).decode()}"


def pdf_pages(origin: str) -> dict[str, str]:
    """Name -> HTML of each page, for a server at `origin` that serves MathJax under /npm/ and
    the Moodle stand-ins (moodle_sample.serve_moodle_stand_in) for the sample."""
    photo = Image.effect_noise((640, 480), 60).convert("RGB")
    logo = Image.new("RGBA", (200, 200), (200, 30, 30, 120))
    svg = ('<svg width="120" height="60"><rect width="120" height="60" fill="teal" '
           'fill-opacity="0.5"/><circle cx="30" cy="30" r="20" fill="orange"/></svg>')  # fmt: skip
    mathjax = f'<script src="{origin}/npm/mathjax3/es5/tex-mml-chtml.js"></script>'
    return {
        "sample": sample_html(origin),
        "mathjax": page(
            "Formulas",
            r'<p class="filter_mathjaxloader_equation">Inline \(\sqrt{\alpha}\) here.</p>'
            r"<p>$$x^2 + \frac{a}{b} = \sum_{i=1}^n \beta_i \int_0^\infty e^{-t} dt$$</p>",
            mathjax,
        ),
        "images": page(
            "Images",
            f'<img src="{_data_uri(photo, "JPEG")}" style="width: 300px">'
            f'<img src="{_data_uri(logo, "PNG")}" style="width: 80px">{svg}'
            '<div style="opacity: 0.6; background: linear-gradient(red, blue); width: 200px; '
            'height: 40px; box-shadow: 4px 4px 8px rgba(0,0,0,0.5)">gradient</div>',
        ),
        "links": page(
            "Links",
            '<p><a href="https://moodle.example.org/mod/quiz/review.php?attempt=7">external</a>'
            ' <a href="#end">to the end</a></p>'
            '<div style="height: 1400px"></div><p id="end">the end</p>',
        ),
        "fonts": page(
            "Schriften \u2013 Grüße 日本 <&>",  # a title XMP must carry as it is
            "<p><b>Bold</b> <i>italic</i> <code>mono</code> Grüße naïve Ελληνικά Кириллица</p>"
            '<p lang="ja">日本語のテキスト</p><p lang="zh">中文文本</p><p>😀 🎉 ✔</p>',
        ),
        # Characters no font has: Chromium shows glyph 0 (.notdef) of a CIDFont.
        "tofu": page("Tofu", "<p>Private use: \U000f0000 \ue000 end</p>"),
    }
