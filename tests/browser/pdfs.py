"""Reading back what the renderer wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pypdf import PdfReader

# A 1x1 PNG, for pages that need an image.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def pdf_text(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode("utf-8")


def page_sizes(path: Path) -> list[tuple[float, float]]:
    return [(float(p.mediabox.width), float(p.mediabox.height)) for p in PdfReader(path).pages]


def page(title: str, body: str, head: str = "") -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>{head}</head>"
        f"<body>{body}</body></html>"
    )


def marker_times(markers: tuple[str, ...]) -> dict[str, int]:
    """Readiness markers ("mathjax-not-found @412ms") as name -> ms since the page started."""
    times = {}
    for marker in markers:
        name, _, at = marker.partition(" @")
        times[name] = int(at.removesuffix("ms"))
    return times
