"""Objects appended by hand as an incremental update (pdf_increment) read back with pypdf."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, IndirectObject, NameObject, NumberObject

from moodle_archive_job.pdf_increment import append_objects


def test_replaced_and_new_objects_read_back_and_the_original_bytes_stay(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    buffer = io.BytesIO()
    writer.write(buffer)
    data = buffer.getvalue()
    reader = PdfReader(io.BytesIO(data))
    root = reader.trailer.raw_get("/Root")
    size = int(reader.trailer["/Size"])
    catalog = DictionaryObject({NameObject(k): reader.trailer["/Root"].raw_get(k)
                                for k in reader.trailer["/Root"]})  # fmt: skip
    catalog[NameObject("/Extra")] = IndirectObject(size + 1, 0, reader)
    objects = {
        root.idnum: catalog,
        size: DictionaryObject({NameObject("/Title"): NameObject("/T")}),
        size + 1: NumberObject(42),
    }
    updated = append_objects(
        data, reader, objects, {"/Info": IndirectObject(size, 0, reader)}
    )

    assert updated is not None and updated.startswith(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = PdfReader(io.BytesIO(updated), strict=True)
        assert again.trailer["/Root"]["/Extra"] == 42
        assert again.trailer["/Info"]["/Title"] == "/T"
        assert int(again.trailer["/Size"]) == size + 2
        assert len(again.pages) == 1
    # Two subsections (the catalog; the two new objects) after the free-list head.
    update = updated[len(data) :]
    assert f"\n{root.idnum} 1\n".encode() in update and f"\n{size} 2\n".encode() in update
