"""Do the PDFs look the same made PDF/A by metadata (the runner's way) and by Ghostscript
(the previous way)? For each Chromium PDF given: both conversions, every page rasterised
by pdftoppm, and the pixel differences (a pixel's: its largest of the three channels,
0-255): share of pixels that differ, the mean difference of those and the largest.

    .venv/bin/python bench/pdfa_look.py [--dpi 100] CHROMIUM.pdf...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moodle_archive_job.pdf_postprocess import convert_to_pdfa  # noqa: E402
from moodle_archive_job.pdfa_fixup import Unfixable, make_pdfa_by_metadata  # noqa: E402


def rasterise(pdf: Path, dpi: int, prefix: Path) -> list[Image.Image]:
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(prefix)], check=True)
    return [Image.open(p).convert("RGB") for p in sorted(prefix.parent.glob(prefix.name + "*"))]


def compare(chromium: Path, dpi: int, work: Path) -> str:
    by_metadata, by_gs = work / "metadata.pdf", work / "gs.pdf"
    shutil.copyfile(chromium, by_metadata)
    shutil.copyfile(chromium, by_gs)
    try:
        make_pdfa_by_metadata(by_metadata, "look")
    except Unfixable as exc:
        return f"not made PDF/A by metadata ({exc})"
    gs = shutil.which("gs")
    assert gs is not None, "Ghostscript missing"
    convert_to_pdfa(by_gs, gs, 120, "look")
    new = rasterise(by_metadata, dpi, work / "new")
    old = rasterise(by_gs, dpi, work / "old")
    if len(new) != len(old):
        return f"{len(new)} pages by metadata, {len(old)} by Ghostscript"
    return f"{len(new)} pages at {dpi} dpi: {pixel_difference(new, old)}"


def pixel_difference(new: list[Image.Image], old: list[Image.Image]) -> str:
    """How the pages `new` differ from `old` (as many, same order): share of pixels that
    differ, the mean difference of those and the largest (a pixel's: its largest channel's)."""
    pixels = differing = total = largest = 0
    for a, b in zip(new, old, strict=True):
        if a.size != b.size:
            return f"page sizes differ: {a.size} vs {b.size}"
        red, green, blue = ImageChops.difference(a, b).split()
        diff = ImageChops.lighter(ImageChops.lighter(red, green), blue)  # per pixel, max
        histogram = diff.histogram()
        pixels += a.size[0] * a.size[1]
        differing += sum(histogram[1:])
        total += sum(value * count for value, count in enumerate(histogram))
        largest = max(largest, diff.getextrema()[1])
    mean = total / differing if differing else 0.0
    return (f"{differing / pixels:.4%} of pixels differ "
            f"(mean difference {mean:.1f}, largest {largest} of 255)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("pdfs", nargs="+", type=Path)
    args = parser.parse_args()
    for pdf in args.pdfs:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{pdf.name}: {compare(pdf, args.dpi, Path(tmp))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
