"""PDF/A-3b of a Chromium PDF without Ghostscript: metadata added as an incremental update.

Chromium's PDF (Skia) already embeds and subsets its fonts, uses RGB and grey only and sets
the Print flag on its link annotations; what it lacks for PDF/A-3b is the XMP metadata that
declares it, an output intent with an sRGB profile and the file identifier in the trailer.
These are appended to the original bytes (pdf_increment.py), so the pages stay exactly as
Chromium drew them. pdfa_checks.py first looks for anything metadata cannot mend; then
`Unfixable` says what, and the caller uses Ghostscript instead.
"""

from __future__ import annotations

import hashlib
import io
from functools import cache
from pathlib import Path

from PIL import ImageCms
from pypdf import PdfReader
from pypdf.errors import PdfReadError, PdfStreamError
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    DecodedStreamObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
    StreamObject,
    TextStringObject,
)

from .atomic_file import write_bytes_atomically
from .pdf_increment import append_objects, classic_xref_offset
from .pdfa_checks import Unfixable, check
from .pdfa_metadata import MetadataError, xmp_packet

__all__ = ["Unfixable", "make_pdfa_by_metadata"]

WORKER_VERSION_KEY = "/MoodleQuizArchiveWorkerVersion"
# What reading a damaged file (or a missing one) raises, through pypdf.
_UNREADABLE = (OSError, PdfReadError, PdfStreamError, KeyError, ValueError, TypeError, IndexError)
_INFO_TEXT_KEYS = ("/Title", "/Author", "/Subject", "/Keywords", "/Creator", "/Producer",
                   "/CreationDate", "/ModDate")  # fmt: skip


def make_pdfa_by_metadata(pdf_path: Path, worker_version: str) -> None:
    """Make `pdf_path` PDF/A-3b in place (atomically); Unfixable (file untouched) if it
    needs more than metadata."""
    try:
        data = pdf_path.read_bytes()
        reader = PdfReader(io.BytesIO(data))
        catalog = reader.trailer["/Root"].get_object()
        if classic_xref_offset(data, reader) is None:
            raise Unfixable("the file has no classic cross-reference table")
        if not isinstance(catalog, DictionaryObject) or not reader.pages:
            raise Unfixable("the file has no catalog or no pages")
        check(data, reader)
        updated = _with_pdfa_metadata(data, reader, catalog, worker_version)
    except _UNREADABLE as exc:
        raise Unfixable(f"the file could not be read: {exc}") from None
    write_bytes_atomically(pdf_path, updated)


def _with_pdfa_metadata(
    data: bytes, reader: PdfReader, catalog: DictionaryObject, worker_version: str
) -> bytes:
    old_info = reader.trailer.get("/Info")
    old_info = old_info.get_object() if old_info is not None else DictionaryObject()
    info = DictionaryObject({NameObject(k): old_info.raw_get(k) for k in old_info})
    info[NameObject(WORKER_VERSION_KEY)] = TextStringObject(worker_version)
    texts = {key: str(info[key]) for key in _INFO_TEXT_KEYS if key in info}
    try:
        packet = xmp_packet(texts)
    except MetadataError as exc:
        raise Unfixable(str(exc)) from None

    first = int(reader.trailer["/Size"])
    numbers = {"info": first, "metadata": first + 1, "intent": first + 2, "profile": first + 3}
    ref = {name: IndirectObject(number, 0, reader) for name, number in numbers.items()}
    metadata = DecodedStreamObject()
    metadata.set_data(packet)
    metadata.update({NameObject("/Type"): NameObject("/Metadata"),
                     NameObject("/Subtype"): NameObject("/XML")})  # fmt: skip
    intent = DictionaryObject({
        NameObject("/Type"): NameObject("/OutputIntent"),
        NameObject("/S"): NameObject("/GTS_PDFA1"),
        NameObject("/OutputConditionIdentifier"): TextStringObject("sRGB"),
        NameObject("/Info"): TextStringObject("sRGB IEC61966-2.1"),
        NameObject("/RegistryName"): TextStringObject("http://www.color.org"),
        NameObject("/DestOutputProfile"): ref["profile"],
    })  # fmt: skip
    new_catalog = DictionaryObject({NameObject(k): catalog.raw_get(k) for k in catalog})
    new_catalog[NameObject("/Metadata")] = ref["metadata"]
    new_catalog[NameObject("/OutputIntents")] = ArrayObject([ref["intent"]])
    root = reader.trailer.raw_get("/Root")
    objects: dict[int, PdfObject] = {
        root.idnum: new_catalog,
        numbers["info"]: info,
        numbers["metadata"]: metadata,
        numbers["intent"]: intent,
        numbers["profile"]: _profile_stream(),
    }
    identifier = ByteStringObject(hashlib.md5(data, usedforsecurity=False).digest())
    trailer = {"/Info": ref["info"], "/ID": ArrayObject([identifier, identifier])}
    updated = append_objects(data, reader, objects, trailer)
    if updated is None:
        raise Unfixable("the file has no classic cross-reference table")
    return updated


def _profile_stream() -> StreamObject:
    stream = DecodedStreamObject()
    stream.set_data(_srgb_profile())
    stream[NameObject("/N")] = NumberObject(3)
    return stream.flate_encode()


@cache
def _srgb_profile() -> bytes:
    """LittleCMS's sRGB profile, the one the Ghostscript path embeds too."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
