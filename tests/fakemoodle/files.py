"""File contents the fake Moodle serves and stores: attachments, backups, draft uploads."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from . import errors
from .faults import FaultConfig
from .images import png
from .state import Attachment, Attempt, DraftFile, Site, User

_BLOCK = 64 * 1024
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()

MIMETYPES = {
    ".mbz": "application/vnd.moodle.backup",
    ".txt": "text/plain",
    ".png": "image/png",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
}


def mimetype_for(filename: str) -> str:
    """Moodle's mimetype for a file name (by extension)."""
    suffix = Path(filename).suffix.lower()
    return MIMETYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "document/unknown"


def _oversize_block(att: Attachment) -> bytes:
    # Pseudo-random and longer than DEFLATE's 32 KiB window: an oversized file stays that big
    # in a compressed ZIP, like a student's video or scan would.
    seed = f"{att.filename}:{att.itemid}:".encode()
    return b"".join(
        hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(_BLOCK // 32)
    )


def attachment_size(att: Attachment, faults: FaultConfig) -> int:
    return faults.attachment_oversize_bytes or len(att.content)


def attachment_chunks(att: Attachment, faults: FaultConfig) -> Iterator[bytes]:
    """The bytes served for an attachment (a generated stream when oversized)."""
    size = faults.attachment_oversize_bytes
    if not size:
        yield att.content
        return
    block = _oversize_block(att)
    sent = 0
    while sent < size:
        chunk = block[: min(_BLOCK, size - sent)]
        sent += len(chunk)
        yield chunk


def attachment_content_hash(att: Attachment, faults: FaultConfig) -> str:
    """SHA-1 of what :func:`attachment_chunks` serves (Moodle's ``contenthash``)."""
    size = faults.attachment_oversize_bytes
    if not size:
        return att.contenthash
    key = (att.filename, att.itemid, size)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is None:
        digest = hashlib.sha1()  # noqa: S324 - Moodle's contenthash is SHA-1
        for chunk in attachment_chunks(att, faults):
            digest.update(chunk)
        cached = digest.hexdigest()
        with _hash_lock:
            _hash_cache[key] = cached
    return cached


def make_attachments(
    site: Site, attempt: Attempt, user: User, contextid: int, count: int, slot: int = 5
) -> list[Attachment]:
    """Student files for the essay question: alternating text notes and PNG sketches."""
    result = []
    for index in range(count):
        itemid = site.next_id("itemid")
        if index % 2 == 0:
            filename = f"notes-{attempt.id}-{index + 1}.txt"
            content = (
                f"Attachment {index + 1} of attempt {attempt.id} by {user.fullname} "
                f"({user.username}).\n"
                f"Secret word: {attempt.answer_word}\n"
            ).encode()
        else:
            filename = f"sketch-{attempt.id}-{index + 1}.png"
            content = png(200, 100, f"Sketch {index + 1} / attempt {attempt.id}", (200, 90, 40))
        result.append(
            Attachment(
                slot, filename, mimetype_for(filename), contextid, attempt.uniqueid, itemid, content
            )
        )
    return result


def make_mbz(kind: str, instanceid: int, filename: str, size: int) -> bytes:
    """A small but real gzip'd tar like a Moodle backup (``moodle_backup.xml`` + padding)."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<moodle_backup><information>'
        f"<name>{filename}</name><type>{kind}</type><original_id>{instanceid}</original_id>"
        "</information></moodle_backup>\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("moodle_backup.xml", xml),
            ("files/padding.bin", _padding(size, filename)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _padding(size: int, seed: str) -> bytes:
    # Hash chain: incompressible enough that the .mbz has roughly the requested size.
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def store_draft(
    site: Site,
    *,
    userid: int,
    contextid: int,
    itemid: int,
    filepath: str,
    filename: str,
    source: BinaryIO,
) -> DraftFile | None:
    """Copy an uploaded file into the user's draft area. ``None`` if the name already exists."""
    key = (contextid, itemid, filepath, filename)
    with site.lock:
        if key in site.drafts:
            return None
    target_dir = site.data_dir / "draft" / str(contextid) / str(itemid) / filepath.strip("/")
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / filename
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    draft = DraftFile(contextid, itemid, filepath, filename, target, target.stat().st_size, userid)
    with site.lock:
        site.drafts[key] = draft
    return draft


def chunk_filename(filename: str, index: int) -> str:
    """The plugin's ``sprintf('%s.chunk%09d.bin', $originalfilename, $i)``."""
    return f"{filename}.chunk{index:09d}.bin"


def reassemble_chunks(
    site: Site, *, contextid: int, itemid: int, filepath: str, filename: str, count: int
) -> DraftFile | None:
    """The `next` plugin's reassembly: append chunks 0..count-1 of the draft area in index
    order, deleting each once appended, and store the result under ``filename``. ``None``
    when a chunk is missing (the chunks appended before it are gone, as in the plugin)."""
    tmp = site.data_dir / "reassembly" / f"{contextid}-{itemid}-{threading.get_ident()}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    userid = 0
    try:
        with tmp.open("wb") as out:
            for index in range(count):
                name = chunk_filename(filename, index)
                chunk = site.draft_file(contextid, itemid, filepath, name)
                if chunk is None:
                    return None
                userid = chunk.userid
                with chunk.path.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                site.delete_draft(chunk)
        with tmp.open("rb") as source:
            draft = store_draft(
                site, userid=userid, contextid=contextid, itemid=itemid, filepath=filepath,
                filename=filename, source=source,
            )
        if draft is None:
            raise errors.stored_file_not_created(filename)
        return draft
    finally:
        tmp.unlink(missing_ok=True)
