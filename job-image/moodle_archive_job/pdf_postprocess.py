"""Post-processing of a rendered report PDF: image optimisation and PDF/A-3b (spec 5.6).

Synchronous; the pipeline runs these in a worker thread. Each replaces the file in place
(atomically: a failure leaves the input as it was).

PDF/A with Debian's Ghostscript 10.00: gs checks every text string of the input's document
info before writing it into the XMP metadata, and 10.00 rejects any string that needs an
escape in a PDF string (parentheses, backslash, control characters, anything beyond ASCII),
Chromium's /Creator always has parentheses (it is the User-Agent: "Mozilla/5.0 (X11; ...").
Under the default -dPDFACompatibilityPolicy=0 gs then prints "Text string detected in
DOCINFO cannot be represented in XMP for PDF/A1, reverting to normal PDF output" and writes
plain PDF with exit code 0, which is how the reference worker never produced PDF/A. Here the
info strings are first reduced to what gs accepts, the policy is 1 (drop what cannot be
PDF/A rather than give up PDF/A), and the output is checked for the PDF/A markers.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageCms
from pypdf import PdfReader, PdfWriter
from pypdf.errors import PdfReadError, PdfStreamError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    EncodedStreamObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
    TextStringObject,
)

from .pdf_docinfo import append_docinfo
from .task import ImageOptimize

logger = logging.getLogger(__name__)

CONTENT_STREAM_COMPRESSION = 6
_GS_OUTPUT_TAIL = 800
# Document info keys gs mirrors into XMP (the ones it checks).
_XMP_INFO_KEYS = ("/Title", "/Author", "/Subject", "/Keywords", "/Creator", "/Producer")
_ESCAPE_FREE = re.compile(r"[^\x20-\x7e]|[()\\]")
# Letters and signs NFKD does not take apart.
_TRANSLITERATION = str.maketrans(
    {
        "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
        "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "\u0131": "i",
        "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
        "(": "[", ")": "]", "\\": "/",
    }
)  # fmt: skip
_SALIENT = re.compile(r"error|cannot|can't|unable|reverting|abort|fail|invalid|CIDFont", re.I)
_PDFAID_PART = re.compile(rb"pdfaid:part\s*(?:=\s*['\"]\s*|>\s*)3\s*['\"<]")
_PDFAID_CONFORMANCE = re.compile(rb"pdfaid:conformance\s*(?:=\s*['\"]\s*|>\s*)B\s*['\"<]")


class PdfaError(Exception):
    """Ghostscript is unusable, failed, or did not produce PDF/A.

    The message names the reason with Ghostscript's salient lines; `output` holds the tail
    of everything Ghostscript printed, for the log.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


# --- image optimisation ------------------------------------------------------------------------


def optimize_images(pdf_path: Path, opts: ImageOptimize) -> None:
    """Fit opaque images into opts.width x opts.height, re-encode them as JPEG (opts.quality),
    and compress the page content streams. Images with transparency stay as they are."""
    writer = PdfWriter(clone_from=pdf_path)
    seen: set[int] = set()
    for page in writer.pages:
        for xobject in _image_xobjects(page, seen):
            _optimize_image(xobject, opts)
        page.compress_content_streams(level=CONTENT_STREAM_COMPRESSION)
    _write_pdf_atomically(writer, pdf_path)


def _image_xobjects(owner: DictionaryObject, seen: set[int]) -> Iterator[StreamObject]:
    """Image XObjects a page (or form) draws, each once per document.

    Walks the resources instead of pypdf's `page.images`, which parses every content
    stream in Python to find inline images (Chromium writes none): a second per report.
    """
    xobjects = _dictionary(_dictionary(owner.get("/Resources")).get("/XObject"))
    for name in xobjects:
        reference = xobjects.raw_get(name)
        if isinstance(reference, IndirectObject):
            if reference.idnum in seen:
                continue
            seen.add(reference.idnum)
        xobject = reference.get_object()
        if not isinstance(xobject, StreamObject):
            continue
        if xobject.get("/Subtype") == "/Image":
            yield xobject
        elif xobject.get("/Subtype") == "/Form":
            yield from _image_xobjects(xobject, seen)


def _dictionary(value: object) -> DictionaryObject:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    return value if isinstance(value, DictionaryObject) else DictionaryObject()


def _optimize_image(xobject: StreamObject, opts: ImageOptimize) -> None:
    image = _opaque_image(xobject)
    if image is None:
        return
    if image.width > opts.width or image.height > opts.height:
        image.thumbnail((opts.width, opts.height), Image.Resampling.LANCZOS)
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG", quality=opts.quality, optimize=True)
    # The base class's set_data stores the bytes as they are (already JPEG-encoded).
    StreamObject.set_data(xobject, jpeg.getvalue())
    if isinstance(xobject, EncodedStreamObject):
        xobject.decoded_self = None
    xobject.pop(NameObject("/DecodeParms"), None)
    xobject[NameObject("/Filter")] = NameObject("/DCTDecode")
    xobject[NameObject("/Width")] = NumberObject(image.width)
    xobject[NameObject("/Height")] = NumberObject(image.height)
    xobject[NameObject("/BitsPerComponent")] = NumberObject(8)


def _opaque_image(xobject: StreamObject) -> Image.Image | None:
    """The pixels of an 8-bit RGB or grey image without transparency; None for others."""
    if any(key in xobject for key in ("/SMask", "/Mask", "/SMaskInData", "/Decode")):
        return None  # soft mask, colour-key mask, JPX alpha, remapped samples
    if xobject.get("/ImageMask", False) or xobject.get("/BitsPerComponent") != 8:
        return None  # stencil masks, bilevel and 16-bit images: JPEG would change or bloat them
    mode = _colour_mode(xobject.get("/ColorSpace"))
    filters = xobject.get("/Filter")
    filters = [filters] if isinstance(filters, str) else list(filters or [])
    if mode is None or filters not in ([], ["/FlateDecode"], ["/DCTDecode"]):
        return None
    size = (int(xobject["/Width"]), int(xobject["/Height"]))
    try:
        data = xobject.get_data()
        if filters == ["/DCTDecode"]:
            image = Image.open(io.BytesIO(data))
            image.load()
            return image if image.mode == mode else None  # e.g. CMYK JPEG
        if len(data) != size[0] * size[1] * len(mode):
            return None
        return Image.frombytes(mode, size, data)
    except (OSError, ValueError, PdfReadError, PdfStreamError) as exc:
        logger.debug("image left as it is, not decodable: %s", exc)
        return None


def _colour_mode(colour_space: object) -> str | None:
    colour_space = colour_space.get_object() if colour_space is not None else None
    if colour_space == "/DeviceRGB":
        return "RGB"
    if colour_space == "/DeviceGray":
        return "L"
    if isinstance(colour_space, ArrayObject) and colour_space and colour_space[0] == "/ICCBased":
        components = _dictionary(colour_space[1]).get("/N")
        return {3: "RGB", 1: "L"}.get(int(components)) if components is not None else None
    return None


# --- PDF/A -----------------------------------------------------------------------------------


def check_ghostscript(gs_binary: str) -> str:
    """Ghostscript's version; PdfaError when the binary does not run."""
    try:
        done = subprocess.run(
            [gs_binary, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PdfaError(f"Ghostscript ({gs_binary}) does not run: {exc}") from None
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise PdfaError(
            f"Ghostscript ({gs_binary}) does not run: exit code {done.returncode}: "
            f"{_tail(done.stderr or done.stdout)}"
        )
    return version


def convert_to_pdfa(
    pdf_path: Path, gs_binary: str, timeout_sec: float, worker_version: str
) -> None:
    """Convert to PDF/A-3b with Ghostscript and check the result; PdfaError if it is not."""
    started = time.monotonic()
    reader = _read(pdf_path)
    if reader is None:
        # Ghostscript would turn it into an empty page, and say so only in a message.
        raise PdfaError(f"{pdf_path.name} is not a readable PDF; no PDF/A conversion")
    pages = len(reader.pages)
    with tempfile.TemporaryDirectory(prefix=".pdfa-", dir=pdf_path.parent) as scratch:
        work = Path(scratch)
        source = _with_clean_docinfo(reader, pdf_path, work / "input.pdf")
        profile = work / "srgb.icc"
        profile.write_bytes(_srgb_profile())
        definitions = work / "pdfa_def.ps"
        definitions.write_text(_pdfa_definitions(profile, worker_version), "ascii")
        output = work / "output.pdf"
        messages = _run_ghostscript(gs_binary, timeout_sec, work, [definitions, source], output)
        problems = pdfa_problems(output, worker_version, pages)
        if problems:
            # Ghostscript's own words first: they name the cause, the problems the symptom.
            said = f": Ghostscript said: {_salient(messages)}" if messages.strip() else ""
            raise PdfaError(
                f"Ghostscript did not produce PDF/A-3b{said} ({', '.join(problems)})",
                _tail(messages),
            )
        if messages.strip():
            logger.debug("Ghostscript: %s", _tail(messages))
        os.replace(output, pdf_path)
    logger.debug("PDF/A-3b conversion of %s took %.2f s", pdf_path.name, time.monotonic() - started)


def pdfa_problems(
    pdf_path: Path, worker_version: str | None = None, pages: int | None = None
) -> list[str]:
    """What keeps this file from being the PDF/A-3b we write; empty when nothing does."""
    reader = _read(pdf_path)
    if reader is None:
        return ["not a readable PDF"]
    problems: list[str] = []
    catalog = reader.trailer["/Root"].get_object()
    metadata = catalog.get("/Metadata")
    xmp = metadata.get_object().get_data() if metadata is not None else b""
    if not _PDFAID_PART.search(xmp):
        problems.append("no XMP pdfaid:part 3")
    if not _PDFAID_CONFORMANCE.search(xmp):
        problems.append("no XMP pdfaid:conformance B")
    if not _has_srgb_output_intent(catalog.get("/OutputIntents")):
        problems.append("no GTS_PDFA1 output intent with an RGB ICC profile")
    if worker_version is not None:
        info = reader.metadata or {}
        if info.get("/MoodleQuizArchiveWorkerVersion") != _docinfo_text(worker_version):
            problems.append("no MoodleQuizArchiveWorkerVersion in the document info")
    found = len(reader.pages)
    if found == 0 or (pages is not None and found != pages):
        problems.append(f"{found} pages instead of {pages if pages is not None else 'some'}")
    return problems


def _read(pdf_path: Path) -> PdfReader | None:
    try:
        reader = PdfReader(pdf_path)
        reader.trailer["/Root"].get_object()
        len(reader.pages)
    except (PdfReadError, PdfStreamError, ValueError, KeyError, OSError) as exc:
        logger.debug("%s is not a readable PDF: %s", pdf_path.name, exc)
        return None
    return reader


def _has_srgb_output_intent(intents: object) -> bool:
    intents = intents.get_object() if isinstance(intents, IndirectObject) else intents
    if not isinstance(intents, ArrayObject):
        return False
    for intent in intents:
        intent = intent.get_object()
        if intent.get("/S") != "/GTS_PDFA1" or intent.get("/OutputConditionIdentifier") != "sRGB":
            continue
        profile = intent.get("/DestOutputProfile")
        profile = profile.get_object() if profile is not None else None
        if isinstance(profile, StreamObject) and profile.get("/N") == 3:
            data = profile.get_data()
            if data[36:40] == b"acsp" and data[16:20] == b"RGB ":
                return True
    return False


def _with_clean_docinfo(reader: PdfReader, pdf_path: Path, target: Path) -> Path:
    """The input, or a copy whose document info strings Ghostscript 10.00 accepts."""
    info = reader.metadata or {}
    cleaned = {
        key: _docinfo_text(str(info[key]))
        for key in _XMP_INFO_KEYS
        if key in info and _docinfo_text(str(info[key])) != str(info[key])
    }
    if not cleaned:
        return pdf_path
    logger.debug("document info reduced to plain ASCII for Ghostscript: %s", sorted(cleaned))
    values = {key: info.raw_get(key) for key in info}
    values.update((key, TextStringObject(text)) for key, text in cleaned.items())
    if append_docinfo(reader, pdf_path, values, target):
        return target
    writer = PdfWriter(reader, incremental=True)
    writer.add_metadata(cleaned)
    with target.open("wb") as out:
        writer.write(out)
    return target


def _docinfo_text(text: str) -> str:
    """Printable ASCII without ( ) \\: accents dropped, brackets for parentheses."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _ESCAPE_FREE.sub(lambda m: " " if m.group().isspace() else "?", plain)


def _srgb_profile() -> bytes:
    """An sRGB ICC profile (version 4, made by LittleCMS) for the output intent."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _ps_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"({escaped})"


def _pdfa_definitions(profile: Path, worker_version: str) -> str:
    version = _ps_string(_docinfo_text(worker_version))
    return "\n".join(
        [
            "%!PS",
            f"[ /MoodleQuizArchiveWorkerVersion {version} /DOCINFO pdfmark",
            "[ /_objdef {icc_PDFA} /type /stream /OBJ pdfmark",
            "[ {icc_PDFA} << /N 3 >> /PUT pdfmark",
            f"[ {{icc_PDFA}} {_ps_string(str(profile))} (r) file /PUT pdfmark",
            "[ /_objdef {OutputIntent_PDFA} /type /dict /OBJ pdfmark",
            "[ {OutputIntent_PDFA} <<",
            "  /Type /OutputIntent /S /GTS_PDFA1 /DestOutputProfile {icc_PDFA}",
            "  /OutputConditionIdentifier (sRGB) /Info (sRGB IEC61966-2.1)",
            "  /RegistryName (http://www.color.org)",
            ">> /PUT pdfmark",
            "[ {Catalog} << /OutputIntents [ {OutputIntent_PDFA} ] >> /PUT pdfmark",
            "",
        ]
    )


def _run_ghostscript(
    gs_binary: str, timeout_sec: float, work: Path, inputs: list[Path], output: Path
) -> str:
    readable = {str(work) + os.sep} | {str(path) for path in inputs}
    args = [
        gs_binary,
        "-q",
        "-dSAFER",
        *(f"--permit-file-read={path}" for path in sorted(readable)),
        f"--permit-file-write={work}{os.sep}",
        "-dNOPAUSE",
        "-dBATCH",
        "-dNOOUTERSAVE",
        "-sDEVICE=pdfwrite",
        # 10.00's PostScript-based PDF reader instead of its new C one: a third less CPU per
        # report, and it keeps the ToUnicode of MathJax's Greek letters (the new one turns
        # alpha into a superscript three). Later releases without it ignore the switch.
        "-dNEWPDF=false",
        "-dPDFA=3",
        "-dPDFACompatibilityPolicy=1",
        "-dCompatibilityLevel=1.7",
        "-sColorConversionStrategy=RGB",
        f"-sOutputICCProfile={work / 'srgb.icc'}",
        "-dEmbedAllFonts=true",
        "-dSubsetFonts=true",
        "-dCompressFonts=true",
        f"-sOutputFile={output}",
        *(str(path) for path in inputs),
    ]
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_sec,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PdfaError(f"Ghostscript took longer than {timeout_sec:g} s") from None
    except OSError as exc:
        raise PdfaError(f"Ghostscript ({gs_binary}) does not run: {exc}") from None
    messages = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise PdfaError(
            f"Ghostscript failed (exit code {done.returncode}): {_salient(messages)}",
            _tail(messages),
        )
    if not output.is_file() or output.stat().st_size == 0:
        raise PdfaError(f"Ghostscript wrote no output: {_salient(messages)}", _tail(messages))
    return messages


def _salient(text: str, limit: int = 240) -> str:
    """Ghostscript's lines that say what went wrong (errors, fallbacks), else its last words."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    picked = list(dict.fromkeys(line for line in lines if line and _SALIENT.search(line)))
    summary = " | ".join(picked) if picked else " ".join(text.split())[-limit:]
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


def _tail(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _GS_OUTPUT_TAIL else "..." + text[-_GS_OUTPUT_TAIL:]


# --- shared ----------------------------------------------------------------------------------


def _write_pdf_atomically(writer: PdfWriter, pdf_path: Path) -> None:
    partial = pdf_path.with_name(f".{pdf_path.name}.partial")
    try:
        with partial.open("wb") as out:
            writer.write(out)
        os.replace(partial, pdf_path)
    finally:
        partial.unlink(missing_ok=True)
