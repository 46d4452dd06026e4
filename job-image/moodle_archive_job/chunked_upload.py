"""Delivering the archive to Moodle's draft area: whole, or in chunks the plugin reassembles.

Plugins that send their upload limit (`moodle_max_upload_bytes`; quiz_archiver's `next`
generation, local_archiving drivers with `moodle_api.max_upload_bytes`) take the archive in
chunks named `<archive>.chunk<9-digit index>.bin` in one draft area, and reassemble them
when `process_uploaded_artifact` says `artifact_count` > 1 (spec 2.9). Every request,
multipart overhead included, stays within the limit (PHP's `post_max_size` counts the body).
Older plugins get the archive whole and must never see `artifact_count`.

`DeliveryCheck` fails a job as soon as its archive cannot be delivered, before rendering
where the attempt count already tells, instead of after all the work.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from .moodle_client import (
    MoodleClient,
    MoodleError,
    MoodleResponseInvalid,
    UploadedFile,
    UploadRefused,
)
from .task import ArchiveTask

log = logging.getLogger(__name__)

CHUNK_CONTENT_TYPE = "application/octet-stream"
# Moodle's item ids are signed 64-bit: plan with the longest, whatever id Moodle hands out.
_LONGEST_ITEMID = 2**63 - 1
# More requests than this for one archive: the limit is unworkably small, say so up front.
MAX_CHUNKS = 10_000
# Lower bound of what one rendered attempt adds to the archive (a one-page PDF and sidecar).
MIN_ATTEMPT_BYTES = 8 * 1024
# After this many attempts the archive size so far is a fair basis for a projection...
PROJECT_AFTER_ATTEMPTS = 5
# ...and a projection above this multiple of what can be delivered fails the job early.
FAR_ABOVE = 2.0

RAISE_LIMIT = (
    "raise Moodle's maximum upload size ($CFG->maxbytes: Site administration > Security > "
    "Site security settings) and PHP's upload_max_filesize and post_max_size"
)


class ArchiveTooLarge(MoodleError):
    """Moodle's upload limit will refuse the archive; the message is one line, safe to show."""


def chunk_name(archive_name: str, index: int) -> str:
    return f"{archive_name}.chunk{index:09d}.bin"


class Delivery(BaseModel):
    """Where the archive landed, and what `process_uploaded_artifact` must be told."""

    draft: UploadedFile  # `filename` is the archive's: chunks are reassembled under it
    artifact_count: int | None  # None: the plugin takes no artifact_count (4.1.0 and older)


@dataclass(frozen=True)
class UploadPlan:
    chunk_bytes: int | None  # None: the archive goes up whole
    count: int


def plan_upload(
    size: int, limit: int | None, whole_overhead: int, chunk_overhead: int
) -> UploadPlan:
    """Whole if the request fits `limit` (or there is none), else as few chunks as fit."""
    if limit is None or size + whole_overhead <= limit:
        return UploadPlan(None, 1)
    chunk_bytes = limit - chunk_overhead
    if chunk_bytes < 1:
        raise ArchiveTooLarge(
            f"Moodle's upload limit of {limit} bytes leaves no room for data in an upload "
            f"request ({chunk_overhead} bytes of form fields); {RAISE_LIMIT}"
        )
    return UploadPlan(chunk_bytes, math.ceil(size / chunk_bytes))


def overheads(client: MoodleClient, archive_name: str) -> tuple[int, int]:
    """Request bytes besides the data: of the whole archive's upload, and the most any chunk's
    upload can have (the longest item id)."""
    whole = client.upload_body(archive_name, 0).overhead
    chunk = client.upload_body(
        chunk_name(archive_name, 0), _LONGEST_ITEMID, content_type=CHUNK_CONTENT_TYPE
    ).overhead
    return whole, chunk


def upload_archive(
    client: MoodleClient, path: Path, archive_name: str, target: UploadTarget
) -> Delivery:
    """Upload the archive and say what to tell `process_uploaded_artifact`."""
    limit, chunks = target.limit, target.chunks
    size = path.stat().st_size
    whole_overhead, chunk_overhead = overheads(client, archive_name)
    plan = plan_upload(size, limit if chunks else None, whole_overhead, chunk_overhead)
    if plan.chunk_bytes is None:
        if limit is not None and size + whole_overhead > limit:
            raise ArchiveTooLarge(
                f"the archive ({size} bytes) is larger than Moodle's upload limit of {limit} "
                f"bytes and this plugin version cannot take it in chunks; {RAISE_LIMIT}, or "
                "upgrade the plugin to a release with chunked uploads"
            )
        try:
            draft = client.upload(path, archive_name)
        except UploadRefused as exc:
            raise UploadRefused(
                exc.errortype, f"{exc} (the archive has {size} bytes; {RAISE_LIMIT})"
            ) from None
        assert draft is not None
        return Delivery(draft=draft, artifact_count=1 if chunks else None)
    if plan.count > MAX_CHUNKS:
        raise ArchiveTooLarge(_too_many(size, plan, limit))
    log.info("uploading the archive in chunks", extra={"fields": {
        "bytes": size, "chunks": plan.count, "chunk_bytes": plan.chunk_bytes, "limit": limit}})
    first: UploadedFile | None = None
    for index in range(plan.count):
        offset = index * plan.chunk_bytes
        landed = client.upload(
            path,
            chunk_name(archive_name, index),
            itemid=0 if first is None else first.itemid,
            offset=offset,
            length=min(plan.chunk_bytes, size - offset),
            content_type=CHUNK_CONTENT_TYPE,
            resend_ok=True,
        )
        if first is None:
            if landed is None:  # cannot happen: a fresh draft area has no name taken
                raise MoodleResponseInvalid("upload.php answered the first chunk without a draft")
            first = landed
        elif landed is not None and (landed.itemid, landed.contextid) != (
            first.itemid, first.contextid
        ):
            raise MoodleResponseInvalid(
                f"upload.php put chunk {index} into draft area {landed.itemid}, "
                f"not {first.itemid} like the first chunk"
            )
    assert first is not None
    draft = first.model_copy(update={"filename": archive_name})
    return Delivery(draft=draft, artifact_count=plan.count)


def _too_many(size: int, plan: UploadPlan, limit: int | None) -> str:
    return (
        f"the archive ({size} bytes) would need {plan.count} uploads of at most {limit} "
        f"bytes each (more than {MAX_CHUNKS}); {RAISE_LIMIT}"
    )


@dataclass(frozen=True)
class UploadTarget:
    """Moodle's upload limit, if known, and whether the plugin reassembles chunks."""

    limit: int | None
    chunks: bool

    @classmethod
    def of(cls, task: ArchiveTask, configured_limit: int | None) -> UploadTarget:
        """The plugin's own limit (it then takes chunks), else the configured one."""
        if task.moodle_max_upload_bytes is not None:
            return cls(task.moodle_max_upload_bytes, True)
        return cls(configured_limit, False)


class DeliveryCheck:
    """Fails early when the archive will not be deliverable under Moodle's upload limit.

    Without a known limit nothing is checked; the overheads come from `overheads`.
    """

    def __init__(self, target: UploadTarget, whole_overhead: int, chunk_overhead: int) -> None:
        self.target = target
        self.limit = limit = target.limit
        if limit is None:
            self.deliverable: int | None = None
        elif target.chunks:
            self.deliverable = MAX_CHUNKS * max(0, limit - chunk_overhead)
        else:
            self.deliverable = max(0, limit - whole_overhead)

    @classmethod
    def for_task(
        cls, task: ArchiveTask, configured_limit: int | None, client: MoodleClient
    ) -> DeliveryCheck:
        target = UploadTarget.of(task, configured_limit)
        return cls(target, *overheads(client, task.archive_name))

    def check(self, archive_bytes: int, attempts_done: int, attempts_total: int) -> None:
        """Raise ArchiveTooLarge if the archive so far, or its projection over all attempts,
        is beyond what can be delivered (called before rendering with zeros)."""
        if self.deliverable is None:
            return
        remaining = max(0, attempts_total - attempts_done)
        if attempts_done >= PROJECT_AFTER_ATTEMPTS:
            per_attempt = archive_bytes / attempts_done
            projected = archive_bytes + per_attempt * remaining
            far = projected > FAR_ABOVE * self.deliverable
        else:
            projected = archive_bytes + MIN_ATTEMPT_BYTES * remaining
            far = projected > self.deliverable
        if archive_bytes > self.deliverable or far:
            raise ArchiveTooLarge(
                f"the archive will not fit Moodle's upload limit of {self.limit} bytes "
                f"({archive_bytes} bytes after {attempts_done} of {attempts_total} attempts, "
                f"about {int(projected)} expected, at most {self.deliverable} deliverable); "
                f"{RAISE_LIMIT}"
            )
