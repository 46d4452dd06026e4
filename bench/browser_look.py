"""Do the PDFs look the same printed by Debian's chromium-headless-shell (the runner's
default) and by Debian's full chromium (the previous default)?

Each page of tests/browser/pdf_pages.py (the real Moodle 5.0 sample with its MathJax through
the Moodle loader stand-in, and the PDF/A test pages: formulas, images, links, CJK and emoji,
.notdef) is printed as the runner prints it (Renderer, A4, default settings) by each
executable, twice. For each page: page counts, PDF sizes, the fonts embedded (pdffonts,
subset prefixes left out), whether the runner makes it PDF/A by metadata alone, and the
pixel differences of every page rasterised by pdftoppm (bench/pdfa_look.py's measure):
current against previous, and each executable's second print against its first (the noise
floor). The resources come from a loopback server in a child process (as in
bench/attempt_profile.py). No timings.

    .venv/bin/python bench/browser_look.py [--dpi 100] [--keep DIR]
        [--current /usr/bin/chromium-headless-shell] [--previous /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.attempt_profile import loopback_server  # noqa: E402
from bench.pdfa_look import pixel_difference, rasterise  # noqa: E402
from bench.render_bench import LOOPBACK_ONLY, settings  # noqa: E402
from moodle_archive_job.pdfa_fixup import Unfixable, make_pdfa_by_metadata  # noqa: E402
from moodle_archive_job.render import Renderer  # noqa: E402
from moodle_archive_job.task import PaperFormat  # noqa: E402
from tests.browser.pdf_pages import pdf_pages  # noqa: E402

PRINTS = 2  # per page and executable: the second tells the noise floor


@dataclass(frozen=True)
class Executable:
    role: str  # "current" or "previous"
    path: str

    def version(self) -> str:
        done = subprocess.run([self.path, "--version"], capture_output=True, text=True, check=False)
        return done.stdout.strip() or done.stderr.strip()


async def print_all(
    executable: Executable, pages: dict[str, str], origin: str, out: Path
) -> dict[str, list[Path]]:
    """Every page printed PRINTS times by one Chromium; name -> the PDFs."""
    chosen = settings().model_copy(update={"chromium_path": executable.path})
    printed: dict[str, list[Path]] = {}
    async with Renderer(chosen, extra_browser_args=LOOPBACK_ONLY) as renderer:
        for n in range(PRINTS):
            for name, html in pages.items():
                pdf = out / f"{name}-{executable.role}-{n + 1}.pdf"
                await renderer.render_pdf(html, origin, pdf, PaperFormat.A4)
                printed.setdefault(name, []).append(pdf)
    return printed


def fonts(pdf: Path) -> list[str]:
    """The fonts of `pdf` as pdffonts lists them: name (no subset prefix), type, embedded;
    with a count where several are alike (Chromium writes a Type 3 font per glyph run)."""
    listing = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True)
    found: Counter[str] = Counter()
    for line in listing.stdout.splitlines()[2:]:
        words = line.split()
        if len(words) < 7:
            continue
        name = words[0].split("+", 1)[-1]
        kind = " ".join(words[1:-6])  # "CID TrueType", "Type 3", ...
        found[f"{name} ({kind}{', embedded' if words[-5] == 'yes' else ', NOT embedded'})"] += 1
    return [f"{n} x {font}" if n > 1 else font for font, n in sorted(found.items())]


def stroke_states(pdf: Path) -> list[str]:
    """Line width (LW) and stroke opacity (CA) of the graphics states the pages use to stroke:
    LW 0 is a hairline (one device pixel at any zoom)."""
    states: Counter[str] = Counter()
    for page in PdfReader(pdf).pages:
        resources = page.get("/Resources")
        graphics = resources.get_object().get("/ExtGState") if resources else None
        for ref in graphics.get_object().values() if graphics else ():
            state = ref.get_object()
            if "/LW" in state:
                states[f"LW {float(state['/LW']):g} CA {float(state.get('/CA', 1)):g}"] += 1
    return [f"{n} x {state}" for state, n in sorted(states.items())]


def pdfa_way(pdf: Path, work: Path) -> str:
    copy = work / f"pdfa-{pdf.name}"
    shutil.copyfile(pdf, copy)
    try:
        make_pdfa_by_metadata(copy, "look")
    except Unfixable as exc:
        return f"Ghostscript ({exc})"
    return "by metadata"


def pixels(a: Path, b: Path, dpi: int, work: Path) -> str:
    first = rasterise(a, dpi, work / f"{a.stem}-vs-{b.stem}-a")
    second = rasterise(b, dpi, work / f"{a.stem}-vs-{b.stem}-b")
    if len(first) != len(second):
        return f"{len(first)} pages against {len(second)}"
    return pixel_difference(first, second)


def report(
    name: str, current: list[Path], previous: list[Path], dpi: int, work: Path
) -> list[str]:
    cur, prev = current[0], previous[0]
    lines = [
        f"{name}:",
        f"  pages {len(PdfReader(cur).pages)} current, {len(PdfReader(prev).pages)} previous; "
        f"PDF {cur.stat().st_size / 1024:.1f} KiB current, "
        f"{prev.stat().st_size / 1024:.1f} KiB previous",
        f"  PDF/A: current {pdfa_way(cur, work)}; previous {pdfa_way(prev, work)}",
    ]
    fonts_current, fonts_previous = fonts(cur), fonts(prev)
    if fonts_current == fonts_previous:
        lines.append(f"  fonts: the same {len(fonts_current)}: {'; '.join(fonts_current)}")
    else:
        lines.append(f"  fonts current: {'; '.join(fonts_current)}")
        lines.append(f"  fonts previous: {'; '.join(fonts_previous)}")
    strokes_current, strokes_previous = stroke_states(cur), stroke_states(prev)
    if strokes_current != strokes_previous:
        lines.append(f"  stroke states current: {'; '.join(strokes_current)}")
        lines.append(f"  stroke states previous: {'; '.join(strokes_previous)}")
    lines.append(f"  current against previous: {pixels(cur, prev, dpi, work)}")
    lines.append(f"  current, 2nd print against 1st: {pixels(current[1], cur, dpi, work)}")
    lines.append(f"  previous, 2nd print against 1st: {pixels(previous[1], prev, dpi, work)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--current", default="/usr/bin/chromium-headless-shell")
    parser.add_argument("--previous", default="/usr/bin/chromium")
    parser.add_argument("--keep", type=Path, help="keep the PDFs in this folder")
    args = parser.parse_args()
    executables = (Executable("current", args.current), Executable("previous", args.previous))
    for executable in executables:
        print(f"{executable.role}: {executable.path} ({executable.version()})")
    with loopback_server() as origin, tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        pages = pdf_pages(origin)  # once: the images page has random noise
        current, previous = (
            asyncio.run(print_all(e, pages, origin, out)) for e in executables
        )
        work = Path(scratch) / "work"
        work.mkdir()
        for name in pages:
            print("\n".join(report(name, current[name], previous[name], args.dpi, work)),
                  flush=True)  # fmt: skip
    print(f"(pixels at {args.dpi} dpi; a pixel's difference: its largest channel's, 0-255)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
