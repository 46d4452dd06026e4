"""Paper sizes for Chromium's print-to-PDF.

Playwright's own `format` table uses rounded inch values (A1 is 23.4 in wide instead of
594 mm), which Chromium's page-size rounding pushes more than a point off the ISO size;
exact CSS pixels keep every format within a point of the standard.
"""

from __future__ import annotations

from moodle_archive_job.task import PaperFormat

_MM_PER_INCH = 25.4
_CSS_PX_PER_INCH = 96
_PT_PER_INCH = 72

# (width, height) portrait, in millimetres (ISO 216) or inches (ANSI).
_ISO_MM: dict[PaperFormat, tuple[float, float]] = {
    PaperFormat.A0: (841, 1189),
    PaperFormat.A1: (594, 841),
    PaperFormat.A2: (420, 594),
    PaperFormat.A3: (297, 420),
    PaperFormat.A4: (210, 297),
    PaperFormat.A5: (148, 210),
    PaperFormat.A6: (105, 148),
}
_ANSI_IN: dict[PaperFormat, tuple[float, float]] = {
    PaperFormat.LETTER: (8.5, 11),
    PaperFormat.LEGAL: (8.5, 14),
    PaperFormat.TABLOID: (11, 17),
    PaperFormat.LEDGER: (17, 11),  # Tabloid in landscape, as Chromium and Playwright define it
}


def paper_size_inches(paper_format: PaperFormat) -> tuple[float, float]:
    if paper_format in _ISO_MM:
        width, height = _ISO_MM[paper_format]
        return width / _MM_PER_INCH, height / _MM_PER_INCH
    return _ANSI_IN[paper_format]


def paper_size_points(paper_format: PaperFormat) -> tuple[float, float]:
    width, height = paper_size_inches(paper_format)
    return width * _PT_PER_INCH, height * _PT_PER_INCH


def paper_size_css(paper_format: PaperFormat) -> tuple[str, str]:
    """Width and height as Playwright's `page.pdf(width=..., height=...)` takes them."""
    width, height = paper_size_inches(paper_format)
    return f"{width * _CSS_PX_PER_INCH:.4f}px", f"{height * _CSS_PX_PER_INCH:.4f}px"
