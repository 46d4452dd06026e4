"""The document info update appended by hand (pdf_docinfo) reads back like pypdf's own."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from pypdf.generic import TextStringObject

from moodle_archive_job.pdf_docinfo import append_docinfo

INFO = {"/Title": "Report (attempt 1)", "/Producer": "Skia/PDF m156"}


def chromium_like(path: Path) -> Path:
    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(595, 842)
    writer.add_metadata(INFO)
    with path.open("wb") as out:
        writer.write(out)
    return path


def test_info_is_appended_and_the_original_bytes_stay(tmp_path: Path) -> None:
    source = chromium_like(tmp_path / "in.pdf")
    reader = PdfReader(source)
    values = {**{k: reader.metadata.raw_get(k) for k in reader.metadata}}  # type: ignore[union-attr]
    values["/Title"] = TextStringObject("Report [attempt 1]")

    assert append_docinfo(reader, source, values, tmp_path / "out.pdf")

    written = (tmp_path / "out.pdf").read_bytes()
    assert written.startswith(source.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = PdfReader(io.BytesIO(written), strict=True)
        assert again.metadata == {"/Title": "Report [attempt 1]", "/Producer": "Skia/PDF m156"}
        assert len(again.pages) == 3
    assert again.trailer.raw_get("/Root").idnum == reader.trailer.raw_get("/Root").idnum


def test_files_without_a_classic_xref_table_are_left_to_pypdf(tmp_path: Path) -> None:
    source = chromium_like(tmp_path / "in.pdf")
    data = source.read_bytes()
    first_object = data.index(b" 0 obj") - 1
    odd = re.sub(rb"startxref\s+\d+", f"startxref\n{first_object}".encode(), data)
    source.write_bytes(odd)

    assert not append_docinfo(PdfReader(io.BytesIO(data)), source, {}, tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()
