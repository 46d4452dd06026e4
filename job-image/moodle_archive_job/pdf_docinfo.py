"""A new document info dictionary appended to a PDF as an incremental update, by hand.

pypdf's incremental writer loads and re-serialises the whole document to change one
dictionary (about 40 ms of CPU for a ten-page report); this appends the new dictionary, a
one-entry cross-reference section and a trailer pointing back at the original one, and
copies the original bytes unchanged. Only for files with a classic cross-reference table
(Chromium's Skia writes one); the caller falls back to pypdf otherwise.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

from pypdf import PdfReader
from pypdf.generic import DictionaryObject, IndirectObject, NameObject, NumberObject, PdfObject

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_TAIL = 1024


def append_docinfo(
    reader: PdfReader, source: Path, values: Mapping[str, PdfObject], target: Path
) -> bool:
    """Write `source` plus an update whose /Info holds `values` to `target`; False (nothing
    written) when the file does not end in a classic cross-reference table."""
    data = source.read_bytes()
    found = _STARTXREF.search(data[-_TAIL:])
    if found is None:
        return False
    previous = int(found.group(1))
    trailer = reader.trailer
    if data[previous : previous + 4] != b"xref" or "/Root" not in trailer:
        return False  # a cross-reference stream (or something odd): let pypdf do it
    number = int(trailer["/Size"])
    info = DictionaryObject({NameObject(k): v for k, v in values.items()})
    out = io.BytesIO()
    out.write(data)
    if not data.endswith(b"\n"):
        out.write(b"\n")
    offset = out.tell()
    out.write(f"{number} 0 obj\n".encode())
    info.write_to_stream(out)
    out.write(b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 1\n0000000000 65535 f\r\n")  # the usual head of the free list
    out.write(f"{number} 1\n{offset:010d} 00000 n\r\n".encode())
    new_trailer = DictionaryObject(
        {
            NameObject(k): trailer.raw_get(k)
            for k in trailer
            if k not in ("/Size", "/Info", "/Prev", "/XRefStm")
        }
    )
    new_trailer[NameObject("/Size")] = NumberObject(number + 1)
    new_trailer[NameObject("/Info")] = IndirectObject(number, 0, reader)
    new_trailer[NameObject("/Prev")] = NumberObject(previous)
    out.write(b"trailer\n")
    new_trailer.write_to_stream(out)
    out.write(f"\nstartxref\n{xref}\n%%EOF\n".encode())
    target.write_bytes(out.getvalue())
    return True
