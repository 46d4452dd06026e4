"""New and replaced objects appended to a PDF as an incremental update, by hand.

pypdf's incremental writer loads and re-serialises the whole document to change a few
objects (tens of ms of CPU for a ten-page report); this copies the original bytes unchanged
and appends the objects, a cross-reference section for them and a trailer pointing back at
the original one. Only for files that end in a classic cross-reference table (Chromium's
Skia writes one); `append_objects` returns None for others, and callers fall back.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

from pypdf import PdfReader
from pypdf.generic import DictionaryObject, NameObject, NumberObject, PdfObject

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_TAIL = 1024
_DROPPED_FROM_TRAILER = ("/Size", "/Prev", "/XRefStm")


def classic_xref_offset(data: bytes, reader: PdfReader) -> int | None:
    """Where the last cross-reference table starts; None unless it is a classic table."""
    found = _STARTXREF.search(data[-_TAIL:])
    if found is None:
        return None
    offset = int(found.group(1))
    if data[offset : offset + 4] != b"xref" or "/Root" not in reader.trailer:
        return None  # a cross-reference stream (or something odd)
    return offset


def append_objects(
    data: bytes,
    reader: PdfReader,
    objects: Mapping[int, PdfObject],
    trailer: Mapping[str, PdfObject],
) -> bytes | None:
    """`data` (the file `reader` reads) plus an update holding `objects` (by object number,
    generation 0; numbers from the trailer's /Size up are new ones) and a trailer with
    `trailer`'s entries over the old ones. None when the file has no classic table."""
    previous = classic_xref_offset(data, reader)
    if previous is None:
        return None
    old = reader.trailer
    size = max(int(old["/Size"]), max(objects, default=0) + 1)
    out = io.BytesIO()
    out.write(data)
    if not data.endswith(b"\n"):
        out.write(b"\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(f"{number} 0 obj\n".encode())
        objects[number].write_to_stream(out)
        out.write(b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 1\n0000000000 65535 f\r\n")  # the usual head of the free list
    for first, run in _runs(sorted(offsets)):
        out.write(f"{first} {len(run)}\n".encode())
        out.write(b"".join(f"{offsets[n]:010d} 00000 n\r\n".encode() for n in run))
    new_trailer = DictionaryObject(
        {NameObject(k): old.raw_get(k) for k in old if k not in _DROPPED_FROM_TRAILER}
    )
    new_trailer.update({NameObject(k): v for k, v in trailer.items()})
    new_trailer[NameObject("/Size")] = NumberObject(size)
    new_trailer[NameObject("/Prev")] = NumberObject(previous)
    out.write(b"trailer\n")
    new_trailer.write_to_stream(out)
    out.write(f"\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def _runs(numbers: list[int]) -> list[tuple[int, list[int]]]:
    """Consecutive object numbers grouped into cross-reference subsections."""
    runs: list[tuple[int, list[int]]] = []
    for number in numbers:
        if runs and runs[-1][1][-1] == number - 1:
            runs[-1][1].append(number)
        else:
            runs.append((number, [number]))
    return runs
