"""The XMP metadata of a PDF/A-3b file, consistent with its document info dictionary.

PDF/A (ISO 19005-3, 6.6.2.3.1 by way of 19005-2) requires each of the document info entries
below that a file has to be mirrored, with an equivalent value, by its XMP property; other
info entries (such as MoodleQuizArchiveWorkerVersion) have no XMP counterpart and need none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.sax.saxutils import escape

XMP_PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"  # the fixed id of every XMP packet (XMP part 1)
_PDF_DATE = re.compile(
    r"^D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:(Z)|([+-])(\d{2})'?(\d{2})?'?)?$"
)
# Characters XML 1.0 cannot hold at all (an XMP packet is XML).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SIMPLE = {"/Creator": "xmp:CreatorTool", "/Producer": "pdf:Producer", "/Keywords": "pdf:Keywords"}
_DATES = {"/CreationDate": "xmp:CreateDate", "/ModDate": "xmp:ModifyDate"}


class MetadataError(ValueError):
    """The document info cannot be mirrored into XMP as it is."""


def xmp_date(pdf_date: str) -> str:
    """A PDF date string (D:YYYYMMDDHHmmSSOHH'mm') as an XMP (ISO 8601) date."""
    found = _PDF_DATE.match(pdf_date.strip())
    if found is None:
        raise MetadataError(f"document info date {pdf_date!r} is not a PDF date")
    year, month, day, hour, minute, second, zulu, sign, tz_hour, tz_minute = found.groups()
    text = year + (f"-{month}" if month else "") + (f"-{day}" if month and day else "")
    if not (month and day and hour):
        return text
    text += f"T{hour}:{minute or '00'}:{second or '00'}"
    if zulu:
        return text + "Z"
    if sign:
        return text + f"{sign}{tz_hour}:{tz_minute or '00'}"
    return text


def xmp_packet(info: Mapping[str, str]) -> bytes:
    """An XMP packet declaring PDF/A-3b and mirroring `info` (document info entries as text).

    MetadataError when an entry holds characters XML cannot carry or a date is malformed."""
    for key, value in info.items():
        if _NOT_XML.search(value):
            raise MetadataError(f"document info {key} holds characters XMP cannot carry")
    properties = ["<pdfaid:part>3</pdfaid:part>", "<pdfaid:conformance>B</pdfaid:conformance>"]
    properties.append("<dc:format>application/pdf</dc:format>")
    if "/Title" in info:
        properties.append(_alt("dc:title", info["/Title"]))
    if "/Subject" in info:
        properties.append(_alt("dc:description", info["/Subject"]))
    if "/Author" in info:
        properties.append(f"<dc:creator><rdf:Seq><rdf:li>{escape(info['/Author'])}"
                          "</rdf:li></rdf:Seq></dc:creator>")  # fmt: skip
    for key, name in _SIMPLE.items():
        if key in info:
            properties.append(f"<{name}>{escape(info[key])}</{name}>")
    for key, name in _DATES.items():
        if key in info:
            properties.append(f"<{name}>{xmp_date(info[key])}</{name}>")
    if "/Trapped" in info:
        raise MetadataError("document info has /Trapped")  # Chromium never writes it
    body = "\n   ".join(properties)
    return (
        f'<?xpacket begin="\ufeff" id="{XMP_PACKET_ID}"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:pdf="http://ns.adobe.com/pdf/1.3/">\n'
        f"   {body}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    ).encode()


def _alt(name: str, text: str) -> str:
    return (f'<{name}><rdf:Alt><rdf:li xml:lang="x-default">{escape(text)}</rdf:li>'
            f"</rdf:Alt></{name}>")  # fmt: skip
