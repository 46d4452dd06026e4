"""The pure parts of the archive: ZIP writer, metadata CSV, folder allocation, encodings."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from moodle_archive_job.archive_writer import ArchiveWriter, check_member_name
from moodle_archive_job.folders import FolderAllocator
from moodle_archive_job.metadata_csv import build_metadata_csv
from moodle_archive_job.moodle_client import decode_first_json, encode_params, strip_token_from_url

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "moodle-5.0"


def test_zip_has_sidecars_no_directories_and_keeps_order(tmp_path: Path) -> None:
    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.7 fake")
    writer = ArchiveWriter(tmp_path / "out.zip")
    writer.add_file("attempts/jdoe/1-x/attempt-1.pdf", src)
    writer.add_bytes("attempts_metadata.csv", b"a,b\r\n")
    writer.close()
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        names = zf.namelist()
        assert names == [
            "attempts/jdoe/1-x/attempt-1.pdf",
            "attempts/jdoe/1-x/attempt-1.pdf.sha256",
            "attempts_metadata.csv",
            "attempts_metadata.csv.sha256",
        ]
        sidecar = zf.read("attempts/jdoe/1-x/attempt-1.pdf.sha256")
        assert sidecar == hashlib.sha256(b"%PDF-1.7 fake").hexdigest().encode()
        assert len(sidecar) == 64 and not sidecar.endswith(b"\n")
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in zf.infolist())


@pytest.mark.parametrize("name", ["/abs", "a/../b", "a//b", "a\\b", "a\0b", "", "./a", "a/"])
def test_member_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        check_member_name(name)


def test_duplicate_member_refused(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path / "out.zip")
    writer.add_bytes("x", b"1")
    with pytest.raises(ValueError, match="duplicate"):
        writer.add_bytes("x", b"2")
    writer.close()


def test_metadata_csv_dialect_and_columns() -> None:
    rows = [
        {"attemptid": 24, "userid": 3, "username": "jdoe", "firstname": "Jane",
         "lastname": "O\"Doe", "idnumber": "", "timestart": 1700000000,
         "timefinish": 1700000600, "attempt": 1, "state": "finished"},
        {"attemptid": 25, "userid": 4, "username": "bob", "firstname": "Bob, Jr.",
         "lastname": "B", "idnumber": "X1", "timestart": 1700000100,
         "timefinish": 1700000700, "attempt": 2, "state": "finished"},
    ]
    data = build_metadata_csv(rows, {24: "attempts/jdoe/24-a/attempt-24", 25: "attempts/bob/x"})
    assert data == (
        b'"attemptid","userid","username","firstname","lastname","idnumber","timestart",'
        b'"timefinish","attempt","state","path"\r\n'
        b'24,3,"jdoe","Jane","O""Doe","",1700000000,1700000600,1,"finished",'
        b'"attempts/jdoe/24-a/attempt-24"\r\n'
        b'25,4,"bob","Bob, Jr.","B","X1",1700000100,1700000700,2,"finished","attempts/bob/x"\r\n'
    )


def test_folder_collisions_follow_attempt_order() -> None:
    alloc = FolderAllocator()
    assert alloc.allocate("jdoe/1-2026", 1) == "jdoe/1-2026"
    assert alloc.allocate("jdoe/1-2026", 2) == "jdoe/1-2026_2"
    assert alloc.allocate("jdoe", 3) == "jdoe_3"  # exists as a parent folder
    assert alloc.allocate("bob", 4) == "bob"
    assert alloc.allocate("jdoe/1-2026_2", 5) == "jdoe/1-2026_2_5"


def test_encode_params_php_style_and_booleans() -> None:
    assert encode_params({
        "jobid": "u", "attemptids": [23, 24], "sections": {"header": 1, "history": 0},
        "attachments": True, "flag": False, "skip": None,
    }) == [
        ("jobid", "u"), ("attemptids[]", "23"), ("attemptids[]", "24"),
        ("sections[header]", "1"), ("sections[history]", "0"),
        ("attachments", "1"), ("flag", "0"),
    ]


def test_decode_ignores_stray_html_after_json_as_real_moodle_sends() -> None:
    body = (SAMPLES / "moodle-5.0-generate_attempt_report-response.txt").read_text()
    assert body.endswith("</body></html>")
    data = decode_first_json(body)
    assert data["status"] == "OK" and data["attemptid"] == 10
    assert data["report"] == (SAMPLES / "moodle-5.0-attempt-report.html").read_text()
    with pytest.raises(json.JSONDecodeError):
        decode_first_json("<html>oops</html>")


def test_urls_in_messages_lose_query_and_credentials() -> None:
    url = "https://u:p@moodle.example:8443/webservice/pluginfile.php/1/x.mbz?token=abc&x=1"
    assert strip_token_from_url(url) == "https://moodle.example:8443/webservice/pluginfile.php/1/x.mbz"
