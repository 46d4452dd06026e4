"""The checkpoint store: atomic attempts, a verified manifest, torn and corrupt entries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from moodle_archive_job.checkpoint import (
    CheckpointStore,
    ManifestCounter,
    TornLine,
    parse_manifest,
)


def stage(store: CheckpointStore, attemptid: int, pdf: bytes = b"%PDF fake",
          attachment: bytes | None = None) -> CheckpointStore:
    folder = store.staging(attemptid)
    (folder / "report.pdf").write_bytes(pdf + str(attemptid).encode())
    files = [(f"attempt-{attemptid}.pdf", "report.pdf")]
    if attachment is not None:
        (folder / "attachments" / "1").mkdir(parents=True)
        (folder / "attachments" / "1" / "a.txt").write_bytes(attachment)
        files.append(("attachments/1/a.txt", "attachments/1/a.txt"))
    store.commit(attemptid, f"user/{attemptid}", f"attempt-{attemptid}", folder, files)
    return store


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    s = CheckpointStore(tmp_path / "checkpoints", shard_index=0)
    s.open()
    return s


def test_committed_attempts_verify_with_their_checksums(store: CheckpointStore) -> None:
    stage(store, 1, attachment=b"hello")
    stage(store, 2)
    verified = store.verify([1, 2, 3])
    assert set(verified.entries) == {1, 2} and verified.corrupt == set()
    entry = verified.entries[1]
    assert entry.foldername == "user/1" and entry.filename == "attempt-1"
    pdf = store.attempt_dir(1) / "report.pdf"
    assert entry.files[0].sha256 == hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert entry.files[0].size == pdf.stat().st_size
    assert [f.name for f in entry.files] == ["attempt-1.pdf", "attachments/1/a.txt"]
    assert list(store.staging_dir.iterdir()) == []
    lines = store.manifest.read_bytes().splitlines()
    assert len(lines) == 2 and lines[0].startswith(b'{"attemptid":1,')


def test_torn_last_line_is_ignored_and_not_glued_to_the_next(store: CheckpointStore) -> None:
    stage(store, 1)
    stage(store, 2)
    data = store.manifest.read_bytes()
    store.manifest.write_bytes(data[: len(data) - 20])  # killed mid-append of attempt 2
    verified = store.verify([1, 2])
    assert set(verified.entries) == {1} and verified.corrupt == {2}

    again = CheckpointStore(store.root, 0)
    again.open()  # a replacement pod
    again.discard(verified.corrupt)
    assert not again.attempt_dir(2).exists()
    stage(again, 2)
    verified = again.verify([1, 2])
    assert set(verified.entries) == {1, 2} and verified.corrupt == set()
    parsed = parse_manifest(again.manifest.read_bytes())
    assert [type(line).__name__ for line in parsed.lines] == [
        "CheckpointEntry", "TornLine", "DroppedEntry", "CheckpointEntry"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "extra-byte"])
def test_corrupt_or_missing_files_drop_the_entry(store: CheckpointStore, damage: str) -> None:
    stage(store, 1, attachment=b"attachment bytes")
    stage(store, 2)
    victim = store.attempt_dir(1) / "attachments" / "1" / "a.txt"
    if damage == "flip":
        victim.write_bytes(b"Attachment bytes")  # same size, other content
    elif damage == "truncate":
        victim.write_bytes(b"")
    elif damage == "remove":
        victim.unlink()
    else:
        victim.write_bytes(b"attachment bytes!")
    verified = store.verify([1, 2])
    assert set(verified.entries) == {2} and verified.corrupt == {1}
    store.discard(verified.corrupt)
    assert not store.attempt_dir(1).exists()
    # Withdrawn: neither trusted nor counted as corrupt again by a later reader.
    later = store.verify([1, 2])
    assert set(later.entries) == {2} and later.corrupt == set()
    assert ManifestCounter(store.root, [1, 2]).done() == {2}


def test_files_without_a_manifest_line_are_not_trusted_and_get_replaced(
    store: CheckpointStore,
) -> None:
    # Killed after the rename, before the manifest line: the files are there, unrecorded.
    store.attempt_dir(5).mkdir(parents=True)
    (store.attempt_dir(5) / "report.pdf").write_bytes(b"half a pdf")
    assert store.verify([5]).entries == {}
    stage(store, 5)
    assert set(store.verify([5]).entries) == {5}
    assert (store.attempt_dir(5) / "report.pdf").read_bytes() == b"%PDF fake5"


def test_staging_of_the_own_shard_is_cleared_on_open(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    mine, other = CheckpointStore(root, 0), CheckpointStore(root, 1)
    mine.open()
    other.open()
    left = mine.staging(7)
    busy = other.staging(8)
    CheckpointStore(root, 0).open()
    assert not left.exists() and busy.exists()


def test_unsafe_paths_in_a_manifest_are_not_trusted(store: CheckpointStore) -> None:
    stage(store, 1)
    line = json.loads(store.manifest.read_bytes().splitlines()[0])
    line["attemptid"] = 2
    line["files"][0]["path"] = "../../etc/passwd"
    with store.manifest.open("ab") as fh:
        fh.write(json.dumps(line).encode() + b"\n")
    parsed = parse_manifest(store.manifest.read_bytes())
    assert parsed.lines[1] == TornLine(2)
    verified = store.verify([1, 2])
    assert set(verified.entries) == {1} and verified.corrupt == {2}


def test_every_shards_manifest_is_read(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    shards = [CheckpointStore(root, i) for i in range(3)]
    for s in shards:
        s.open()
    for attemptid in range(1, 10):
        stage(shards[attemptid % 3], attemptid)
    assert sorted(p.name for p in root.glob("manifest-*.jsonl")) == [
        "manifest-0.jsonl", "manifest-1.jsonl", "manifest-2.jsonl"]
    assert set(shards[0].verify(range(1, 10)).entries) == set(range(1, 10))


def test_counter_reads_incrementally_and_waits_for_complete_lines(store: CheckpointStore) -> None:
    counter = ManifestCounter(store.root, [1, 2, 3])
    assert counter.done() == set()
    stage(store, 1)
    assert counter.done() == {1}
    line = (b'{"attemptid":2,"kind":"attempt","foldername":"f","filename":"x","files":[]}'
            b"\n")
    with store.manifest.open("ab") as fh:
        fh.write(line[:30])
    assert counter.done() == {1}  # half a line is not counted yet
    with store.manifest.open("ab") as fh:
        fh.write(line[30:])
    assert counter.done() == {1, 2}
    store.discard([2])
    assert counter.done() == {1}


def test_the_manifest_holds_names_and_checksums_only(store: CheckpointStore) -> None:
    stage(store, 3)
    record = json.loads(store.manifest.read_text().splitlines()[0])
    assert set(record) == {"attemptid", "kind", "foldername", "filename", "files"}
    assert set(record["files"][0]) == {"name", "path", "size", "sha256"}
