"""A new document info dictionary appended to a PDF as an incremental update (pdf_increment)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pypdf import PdfReader
from pypdf.generic import DictionaryObject, IndirectObject, NameObject, PdfObject

from .pdf_increment import append_objects


def append_docinfo(
    reader: PdfReader, source: Path, values: Mapping[str, PdfObject], target: Path
) -> bool:
    """Write `source` plus an update whose /Info holds `values` to `target`; False (nothing
    written) when the file does not end in a classic cross-reference table."""
    number = int(reader.trailer["/Size"])
    info = DictionaryObject({NameObject(k): v for k, v in values.items()})
    updated = append_objects(
        source.read_bytes(), reader, {number: info}, {"/Info": IndirectObject(number, 0, reader)}
    )
    if updated is None:
        return False
    target.write_bytes(updated)
    return True
