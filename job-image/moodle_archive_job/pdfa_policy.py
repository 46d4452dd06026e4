"""PDF/A of one attempt's PDF under QUIZ_ARCHIVER_PDFA_MODE.

Chromium's PDF is made PDF/A-3b by adding metadata (pdfa_fixup.py); a page that needs more
(e.g. text showing the .notdef glyph, a font that is not embedded) goes through Ghostscript.
"strict" (the default) fails the attempt when neither can make PDF/A of its page; the
reference worker does the same for every failure it notices (Ghostscript's exit code or its
time limit; it cannot notice Ghostscript falling back to plain PDF, which it then ships).
"lenient" keeps the plain PDF and records a warning naming the attempt and the reason.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .attempt_outcomes import AttemptFailed, AttemptOutcomes
from .logs import redact
from .pdf_postprocess import PdfaError, convert_to_pdfa
from .pdfa_fixup import Unfixable, make_pdfa_by_metadata
from .settings import RunnerSettings
from .version import VERSION

log = logging.getLogger(__name__)


def make_pdfa(
    pdf: Path,
    attemptid: int,
    settings: RunnerSettings,
    outcomes: AttemptOutcomes,
    diagnostics: Path | None = None,
) -> None:
    """In strict mode a failed attempt's `diagnostics` folder gets the plain PDF
    (report.pdf), what Ghostscript said (ghostscript.txt) and the reason (reason.txt)."""
    try:
        make_pdfa_by_metadata(pdf, VERSION)
        return
    except Unfixable as unfixable:
        why = str(unfixable)
        log.info("attempt %s: PDF/A by Ghostscript, metadata will not do: %s", attemptid, why)
    gs = settings.ghostscript_binary()
    if gs is None:
        raise AttemptFailed(attemptid, f"no PDF/A: {why}; Ghostscript (gs) is not installed")
    try:
        convert_to_pdfa(pdf, gs, settings.pdfa_conversion_timeout_sec, VERSION)
    except PdfaError as exc:
        if exc.output:
            log.info("attempt %s: Ghostscript said: %s", attemptid, exc.output)
        if settings.pdfa_mode == "strict":
            failure = AttemptFailed(attemptid, f"no PDF/A: {why}; {exc}")
            if diagnostics is not None:
                _keep(diagnostics, pdf, exc, str(failure))
            raise failure from None
        outcomes.warn(f"attempt {attemptid}: kept as plain PDF, not PDF/A: {why}; {exc}")


def _keep(folder: Path, pdf: Path, exc: PdfaError, reason: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pdf, folder / "report.pdf")
        (folder / "ghostscript.txt").write_text(redact(exc.output or str(exc)) + "\n", "utf-8")
        (folder / "reason.txt").write_text(redact(reason) + "\n", "utf-8")
    except OSError as error:
        log.warning("could not keep the diagnostics in %s: %s", folder, error)
