"""The XMP packet of pdfa_fixup: PDF/A-3b declared, the document info mirrored."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from moodle_archive_job.pdfa_metadata import MetadataError, xmp_date, xmp_packet

NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "pdfaid": "http://www.aiim.org/pdfa/ns/id/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "pdf": "http://ns.adobe.com/pdf/1.3/",
}


@pytest.mark.parametrize(
    ("pdf", "xmp"),
    [
        ("D:20261203103806+00'00'", "2026-12-03T10:38:06+00:00"),
        ("D:20261203103806-05'30", "2026-12-03T10:38:06-05:30"),
        ("D:20261203103806Z", "2026-12-03T10:38:06Z"),
        ("D:20261203103806", "2026-12-03T10:38:06"),
        ("D:202612031038", "2026-12-03T10:38:00"),
        ("D:2026", "2026"),
    ],
)
def test_pdf_dates_become_xmp_dates(pdf: str, xmp: str) -> None:
    assert xmp_date(pdf) == xmp


def test_a_malformed_date_is_refused() -> None:
    with pytest.raises(MetadataError, match="not a PDF date"):
        xmp_date("yesterday")


def test_packet_declares_pdfa_3b_and_mirrors_the_info() -> None:
    info = {
        "/Title": "Quiz <1> & \"Grüße\"",
        "/Author": "Ada",
        "/Creator": "Mozilla/5.0 (X11; Linux x86_64)",
        "/Producer": "Skia/PDF m156",
        "/CreationDate": "D:20261203103806+00'00'",
        "/ModDate": "D:20261203103807+00'00'",
    }
    packet = xmp_packet(info)
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert packet.endswith(b'<?xpacket end="r"?>')
    root = ET.fromstring(packet.split(b"?>", 1)[1].rsplit(b"<?xpacket", 1)[0])  # noqa: S314
    found = root.find("rdf:RDF/rdf:Description", NS)
    assert found is not None
    assert found.findtext("pdfaid:part", namespaces=NS) == "3"
    assert found.findtext("pdfaid:conformance", namespaces=NS) == "B"
    assert found.findtext("dc:title/rdf:Alt/rdf:li", namespaces=NS) == info["/Title"]
    assert found.findtext("dc:creator/rdf:Seq/rdf:li", namespaces=NS) == "Ada"
    assert found.findtext("xmp:CreatorTool", namespaces=NS) == info["/Creator"]
    assert found.findtext("pdf:Producer", namespaces=NS) == "Skia/PDF m156"
    assert found.findtext("xmp:CreateDate", namespaces=NS) == "2026-12-03T10:38:06+00:00"
    assert found.findtext("xmp:ModifyDate", namespaces=NS) == "2026-12-03T10:38:07+00:00"


def test_info_xml_cannot_carry_is_refused() -> None:
    with pytest.raises(MetadataError, match="/Title"):
        xmp_packet({"/Title": "bell \x07"})
