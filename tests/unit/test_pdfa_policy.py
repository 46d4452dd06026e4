"""QUIZ_ARCHIVER_PDFA_MODE: strict fails the attempt, lenient keeps the plain PDF with a warning."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from moodle_archive_job.attempt_outcomes import AttemptFailed, AttemptOutcomes
from moodle_archive_job.pdf_postprocess import pdfa_problems
from moodle_archive_job.pdfa_policy import make_pdfa
from moodle_archive_job.settings import RunnerSettings
from moodle_archive_job.version import VERSION

# What Ghostscript does when it cannot keep PDF/A: exit code 0, a plain PDF, a message.
FALLING_BACK_GS = (
    "#!/bin/sh\n"
    'for a; do case "$a" in -sOutputFile=*) out="${a#-sOutputFile=}";; esac; last="$a"; done\n'
    'cp "$last" "$out"\n'
    'echo "GPL Ghostscript 10.00.0: A CIDFont uses CID 0, reverting to normal PDF output" >&2\n'
)


@pytest.fixture
def plain_pdf(tmp_path: Path) -> Path:
    """A PDF that metadata alone cannot make PDF/A (JavaScript), so Ghostscript gets it."""
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.root_object[NameObject("/OpenAction")] = DictionaryObject(
        {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject("1;")}
    )
    path = tmp_path / "attempt-7" / "report.pdf"
    path.parent.mkdir()
    with path.open("wb") as out:
        writer.write(out)
    return path


def settings(tmp_path: Path, mode: str) -> RunnerSettings:
    gs = tmp_path / "fake-gs"
    gs.write_text(FALLING_BACK_GS)
    gs.chmod(gs.stat().st_mode | stat.S_IXUSR)
    return RunnerSettings(
        pdfa_mode=mode, pdfa_conversion_ghostscript_binary_path=str(gs)  # type: ignore[arg-type]
    )


def test_strict_fails_the_attempt_naming_it_and_the_reason(
    plain_pdf: Path, tmp_path: Path
) -> None:
    outcomes = AttemptOutcomes()
    folder = tmp_path / "diagnostics" / "attempt-7"
    with pytest.raises(AttemptFailed) as raised:
        make_pdfa(plain_pdf, 7, settings(tmp_path, "strict"), outcomes, folder)
    message = str(raised.value)
    assert message.startswith(
        "attempt 7: no PDF/A: the catalog has /OpenAction; "
        "Ghostscript did not produce PDF/A-3b: "
    )
    assert "A CIDFont uses CID 0, reverting to normal PDF output" in message
    assert "\n" not in message
    assert outcomes.warnings == []
    assert (folder / "report.pdf").read_bytes() == plain_pdf.read_bytes()
    assert "CID 0" in (folder / "ghostscript.txt").read_text()
    assert (folder / "reason.txt").read_text() == message + "\n"


def test_lenient_keeps_the_plain_pdf_and_warns(plain_pdf: Path, tmp_path: Path) -> None:
    before = plain_pdf.read_bytes()
    outcomes = AttemptOutcomes()
    make_pdfa(plain_pdf, 7, settings(tmp_path, "lenient"), outcomes)
    assert plain_pdf.read_bytes() == before
    (warning,) = outcomes.warnings
    assert warning.startswith(
        "attempt 7: kept as plain PDF, not PDF/A: the catalog has /OpenAction; Ghostscript did not"
    )
    assert "CID 0" in warning and len(warning) <= 300


def test_strict_is_the_default_and_both_names_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert RunnerSettings().pdfa_mode == "strict"
    monkeypatch.setenv("MOODLE_ARCHIVER_PDFA_MODE", "lenient")
    assert RunnerSettings().pdfa_mode == "lenient"
    monkeypatch.delenv("MOODLE_ARCHIVER_PDFA_MODE")
    monkeypatch.setenv("QUIZ_ARCHIVER_PDFA_MODE", "lenient")
    assert RunnerSettings().pdfa_mode == "lenient"


def test_a_pdf_metadata_can_fix_never_reaches_ghostscript(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    pdf = tmp_path / "report.pdf"
    with pdf.open("wb") as out:
        writer.write(out)
    failing_gs = tmp_path / "failing-gs"
    failing_gs.write_text("#!/bin/sh\necho called >> \"$0.calls\"\nexit 3\n")
    failing_gs.chmod(failing_gs.stat().st_mode | stat.S_IXUSR)
    outcomes = AttemptOutcomes()
    make_pdfa(pdf, 7, RunnerSettings(pdfa_conversion_ghostscript_binary_path=str(failing_gs)),
              outcomes)  # fmt: skip
    assert pdfa_problems(pdf, VERSION, 1) == []
    assert not failing_gs.with_name("failing-gs.calls").exists()
    assert outcomes.warnings == []
