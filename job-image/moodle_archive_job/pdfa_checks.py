"""What in a PDF keeps it from becoming PDF/A-3b by adding metadata alone (pdfa_fixup.py).

Checks the parts of ISO 19005-3 (by way of 19005-2) that a file Chromium's Skia writes could
break and that an incremental update cannot mend: the header, encryption, actions and
JavaScript, forms, optional content, embedded files, annotation flags, fonts that are not
embedded or of a kind not checked here, uses of the .notdef glyph (CID 0) of a CIDFont,
images with /Interpolate true or alternates, CMYK colour, transfer functions and halftones in
graphics states, and graphics states nested deeper than 28 levels. Anything unexpected counts
as a problem: the caller then falls back to Ghostscript. veraPDF checks the outcome in the
tests (tests/pdfa).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import accumulate

from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

_HEADER = re.compile(rb"%PDF-1\.[0-7]\r?\n?%[\x80-\xff]{4}")
_CATALOG_FORBIDDEN = ("/AA", "/OpenAction", "/AcroForm", "/OCProperties", "/Collection",
                      "/Metadata", "/OutputIntents", "/Perms", "/Requirements")  # fmt: skip
_NAMES_FORBIDDEN = ("/JavaScript", "/EmbeddedFiles", "/AlternatePresentations", "/Renditions")
_ANNOTATIONS = ("/Link",)
_ACTIONS = ("/URI", "/GoTo")
_PRINT, _HIDDEN_FLAGS = 4, 1 | 2 | 32 | 256  # Print; Invisible, Hidden, NoView, ToggleNoView
_COLOUR_SPACES = ("/DeviceRGB", "/DeviceGray", "/ICCBased", "/Indexed", "/Pattern")
_FILTERS = ("/FlateDecode", "/DCTDecode", "/ASCIIHexDecode", "/ASCII85Decode", "/RunLengthDecode")
_BLEND_MODES = (
    "/Normal", "/Compatible", "/Multiply", "/Screen", "/Overlay", "/Darken", "/Lighten",
    "/ColorDodge", "/ColorBurn", "/HardLight", "/SoftLight", "/Difference", "/Exclusion",
    "/Hue", "/Saturation", "/Color", "/Luminosity",
)  # fmt: skip
_MAX_NESTING = 28  # PDF/A-2 and -3 implementation limit for q/Q
# Content stream tokens: q and Q; a font selection or a hex string (glyph codes).
_Q_OPERATORS = re.compile(rb"[qQ](?<![^\s\]>)][qQ])(?![^\s\[<(/])")  # the letter first: fast
_TEXT_TOKENS = re.compile(rb"/([^\s/<>\[\]()%]+)\s+[-+.\d]+\s+Tf(?![^\s\[<(/])|<([0-9A-Fa-f\s]*)>")
# A hex string with 0000 at a two-byte boundary, or one with white space (Skia writes none):
# only then is the content scanned font by font.
_MAYBE_CID_ZERO = re.compile(rb"<(?:[0-9A-Fa-f]{4})*0000|<[0-9A-Fa-f]*\s[0-9A-Fa-f\s]*>")


class Unfixable(Exception):
    """The file needs more than metadata to become PDF/A-3b; the message says what."""


def check(data: bytes, reader: PdfReader) -> None:
    """Unfixable naming the first problem found; None when metadata alone will do."""
    if not _HEADER.match(data):
        raise Unfixable("the file header is not %PDF-1.n followed by a binary comment")
    if "/Encrypt" in reader.trailer:
        raise Unfixable("the file is encrypted")
    catalog = _dictionary(reader.trailer["/Root"])
    for key in _CATALOG_FORBIDDEN:
        if key in catalog:
            raise Unfixable(f"the catalog has {key}")
    names = _dictionary(catalog.get("/Names"))
    for key in _NAMES_FORBIDDEN:
        if key in names:
            raise Unfixable(f"the name dictionary has {key}")
    seen: set[int] = set()
    for number, page in enumerate(reader.pages, start=1):
        try:
            if "/AA" in page:
                raise Unfixable("it has additional actions")
            for annotation in _array(page.get("/Annots")):
                _check_annotation(_dictionary(annotation))
            _check_resources(_dictionary(page.get("/Resources")), seen, _page_content(page))
        except Unfixable as exc:
            raise Unfixable(f"page {number}: {exc}") from None


def _check_annotation(annotation: DictionaryObject) -> None:
    subtype = annotation.get("/Subtype")
    if subtype not in _ANNOTATIONS:
        raise Unfixable(f"a {subtype} annotation")
    flags = int(annotation.get("/F", 0))
    if not flags & _PRINT or flags & _HIDDEN_FLAGS:
        raise Unfixable(f"a {subtype} annotation with flags {flags} (not printed)")
    if "/AA" in annotation:
        raise Unfixable(f"a {subtype} annotation with additional actions")
    action = _dictionary(annotation.get("/A"))
    if action and (action.get("/S") not in _ACTIONS or "/Next" in action):
        raise Unfixable(f"a {subtype} annotation with a {action.get('/S')} action")


def _check_resources(
    resources: DictionaryObject, seen: set[int], content: bytes | None
) -> None:
    """Check the resources and the content stream that uses them (None: no text)."""
    fonts = _dictionary(resources.get("/Font"))
    two_byte = {name[1:] for name, font in _items(fonts) if _check_font(font, seen)}
    if content is not None:
        _check_content(content, two_byte)
    for _, state in _items(_dictionary(resources.get("/ExtGState"))):
        _check_graphics_state(state, seen)
    for _, xobject in _items(_dictionary(resources.get("/XObject"))):
        if _first_visit(xobject, seen):
            _check_xobject(_stream(xobject), seen)
    for _, pattern in _items(_dictionary(resources.get("/Pattern"))):
        if _first_visit(pattern, seen):
            pattern = pattern.get_object()
            if isinstance(pattern, StreamObject):  # a tiling pattern: content of its own
                _check_resources(_dictionary(pattern.get("/Resources")), seen, pattern.get_data())
            else:
                _check_colour_space(_dictionary(_dictionary(pattern).get("/Shading")))
    for _, shading in _items(_dictionary(resources.get("/Shading"))):
        _check_colour_space(_dictionary(shading))
    for _, space in _items(_dictionary(resources.get("/ColorSpace"))):
        _check_colour_space_value(space)


def _check_font(reference: object, seen: set[int]) -> bool:
    """Whether the font is a Type0 font (two-byte codes, CID 0 is .notdef)."""
    font = _dictionary(reference)
    subtype = font.get("/Subtype")
    name = font.get("/BaseFont", subtype)
    if subtype == "/Type3":
        if _first_visit(reference, seen):
            _check_resources(_dictionary(font.get("/Resources")), seen, None)
        return False
    if subtype != "/Type0" or font.get("/Encoding") != "/Identity-H":
        raise Unfixable(f"font {name} is a {subtype} font, not checked here")
    descendant = _dictionary(_array(font.get("/DescendantFonts"))[0])
    kind = descendant.get("/Subtype")
    descriptor = _dictionary(descendant.get("/FontDescriptor"))
    program = "/FontFile2" if kind == "/CIDFontType2" else "/FontFile3"
    if kind not in ("/CIDFontType2", "/CIDFontType0") or program not in descriptor:
        raise Unfixable(f"font {name} is not embedded")
    if kind == "/CIDFontType2" and "/CIDToGIDMap" not in descendant:
        raise Unfixable(f"font {name} has no CIDToGIDMap")
    if "/CIDSet" in descriptor:
        raise Unfixable(f"font {name} has a CIDSet")
    return True


def _check_content(data: bytes, two_byte: set[str]) -> None:
    operators = _Q_OPERATORS.findall(data)
    if operators and max(accumulate(1 if op == b"q" else -1 for op in operators)) > _MAX_NESTING:
        raise Unfixable(f"graphics states nested deeper than {_MAX_NESTING}")
    if two_byte and _MAYBE_CID_ZERO.search(data):
        font_is_cid = False
        for found in _TEXT_TOKENS.finditer(data):
            font, text = found.groups()
            if font is not None:
                font_is_cid = font.decode("latin-1") in two_byte
            elif font_is_cid and _has_cid_zero(text):
                raise Unfixable("text shows the .notdef glyph (CID 0) of a CIDFont")


def _has_cid_zero(text: bytes) -> bool:
    digits = re.sub(rb"\s", b"", text)
    return any(digits[i : i + 4] == b"0000" for i in range(0, len(digits), 4))


def _check_graphics_state(reference: object, seen: set[int]) -> None:
    state = _dictionary(reference)
    for key in ("/TR", "/HTP", "/HTO", "/HT"):
        if key in state:
            raise Unfixable(f"a graphics state with {key}")
    if state.get("/TR2", "/Default") != "/Default":
        raise Unfixable("a graphics state with a transfer function")
    modes = state.get("/BM", "/Normal")
    for mode in modes if isinstance(modes, ArrayObject) else [modes]:
        if mode not in _BLEND_MODES:
            raise Unfixable(f"blend mode {mode}")
    mask = state.get("/SMask")
    if isinstance(mask, IndirectObject | DictionaryObject):
        group = _dictionary(mask).get("/G")
        if group is not None and _first_visit(group, seen):
            _check_xobject(_stream(group), seen)


def _check_xobject(xobject: StreamObject, seen: set[int]) -> None:
    for key in ("/OPI", "/Alternates", "/PS", "/Subtype2"):
        if key in xobject:
            raise Unfixable(f"an XObject with {key}")
    filters = xobject.get("/Filter")
    for name in filters if isinstance(filters, ArrayObject) else [filters] if filters else []:
        if name not in _FILTERS:
            raise Unfixable(f"a stream with filter {name}")
    if xobject.get("/Subtype") == "/Image":
        if xobject.get("/Interpolate", False):
            raise Unfixable("an image with /Interpolate true")
        if "/ColorSpace" in xobject:
            _check_colour_space_value(xobject["/ColorSpace"])
        mask = xobject.get("/SMask")
        if mask is not None and _first_visit(mask, seen):
            _check_xobject(_stream(mask), seen)
    elif xobject.get("/Subtype") == "/Form":
        _check_resources(_dictionary(xobject.get("/Resources")), seen, xobject.get_data())
    else:
        raise Unfixable(f"an XObject of subtype {xobject.get('/Subtype')}")


def _check_colour_space(owner: DictionaryObject) -> None:
    if "/ColorSpace" in owner:
        _check_colour_space_value(owner["/ColorSpace"])


def _check_colour_space_value(value: object) -> None:
    space = value.get_object() if isinstance(value, IndirectObject) else value
    family = space[0] if isinstance(space, ArrayObject) and space else space
    if family not in _COLOUR_SPACES:
        raise Unfixable(f"colour space {family}")
    if family == "/Indexed":
        _check_colour_space_value(space[1])


def _page_content(page: DictionaryObject) -> bytes:
    contents = page.get("/Contents")
    contents = contents.get_object() if isinstance(contents, IndirectObject) else contents
    if contents is None:
        return b""
    parts = contents if isinstance(contents, ArrayObject) else [contents]
    return b"\n".join(_stream(part).get_data() for part in parts)


# --- helpers -------------------------------------------------------------------------------------


def _first_visit(reference: object, seen: set[int]) -> bool:
    if not isinstance(reference, IndirectObject):
        return True
    if reference.idnum in seen:
        return False
    seen.add(reference.idnum)
    return True


def _items(dictionary: DictionaryObject) -> Iterator[tuple[str, object]]:
    for key in dictionary:
        yield key, dictionary.raw_get(key)


def _dictionary(value: object) -> DictionaryObject:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    return value if isinstance(value, DictionaryObject) else DictionaryObject()


def _array(value: object) -> ArrayObject:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    return value if isinstance(value, ArrayObject) else ArrayObject()


def _stream(value: object) -> StreamObject:
    value = value.get_object() if isinstance(value, IndirectObject) else value
    if not isinstance(value, StreamObject):
        raise Unfixable("an XObject that is not a stream")
    return value
