"""What pdfa_checks refuses in a PDF's structure (Chromium PDFs: tests/browser)."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    NumberObject,
)

from moodle_archive_job.pdfa_checks import Unfixable, check


def pdf_with(content: bytes, **page_entries: object) -> tuple[bytes, PdfReader]:
    writer = PdfWriter()
    page = writer.add_blank_page(595, 842)
    stream = DecodedStreamObject()
    stream.set_data(content)
    page.replace_contents(stream)
    for key, value in page_entries.items():
        page[NameObject(f"/{key}")] = value  # type: ignore[assignment]
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue(), PdfReader(io.BytesIO(out.getvalue()))


def test_plain_content_passes() -> None:
    check(*pdf_with(b"q\n1 0 0 1 0 0 cm\n0 0 10 10 re\nf\nQ\n"))


def test_graphics_states_nested_deeper_than_28_are_refused() -> None:
    check(*pdf_with(b"q\n" * 28 + b"Q\n" * 28))
    with pytest.raises(Unfixable, match="page 1: graphics states nested deeper than 28"):
        check(*pdf_with(b"q " * 29 + b"Q " * 29))


def test_an_annotation_that_is_not_printed_is_refused() -> None:
    link = DictionaryObject({
        NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Link"),
        NameObject("/F"): NumberObject(0),
    })  # fmt: skip
    with pytest.raises(Unfixable, match="flags 0"):
        check(*pdf_with(b"", Annots=ArrayObject([link])))


def test_a_font_that_is_not_embedded_is_refused() -> None:
    helvetica = DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    })  # fmt: skip
    resources = DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): helvetica})})  # fmt: skip
    with pytest.raises(Unfixable, match="font /Helvetica is a /Type1 font"):
        check(*pdf_with(b"BT /F1 12 Tf (Hi) Tj ET", Resources=resources))
