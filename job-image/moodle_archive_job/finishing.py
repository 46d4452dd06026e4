"""The finishing step, run once per job (by shard 0): the ZIP from the checkpoints in
`attemptids` order with the reference folder allocation, the metadata CSV, the backups, the
upload and Moodle's processing of it (spec 4.1 from "metadata" on).

Moodle's answers are recorded in the job directory so that a finisher restarted mid-way does
not hand Moodle the archive twice: `upload.json` (the draft holding the uploaded ZIP, with its
checksum) lets it go straight to `process_uploaded_artifact`; `uploaded.json` (written after
Moodle processed the archive) means the job is over and only success is reported.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .archive_layout import METADATA_CSV, ArchiveLayout, ArchiveOptions
from .archive_writer import ArchiveWriter, sha256_file
from .checkpoint import CheckpointEntry
from .chunked_upload import UploadTarget, upload_archive
from .final_status import PendingArtifact, ProcessingUndelivered, Verdict, verdict
from .metadata_csv import build_metadata_csv
from .moodle_api import BackupStatus, JobStatus
from .moodle_client import (
    MoodleException,
    MoodleServerError,
    MoodleStatusError,
    MoodleUnreachable,
    UploadedFile,
)
from .progress import Artifact, Phase
from .stage import JobFailed, JobRun
from .task import BackupTask

log = logging.getLogger(__name__)

BACKUP_CONTENT_TYPE = "application/vnd.moodle.backup"


class UploadState(BaseModel):
    artifact: Artifact
    draft: UploadedFile
    artifact_count: int | None = None  # chunks uploaded; None: a plugin without the parameter


class UploadedState(BaseModel):
    artifact: Artifact


class Finisher:
    def __init__(self, run: JobRun, checkpoints: Path, keep_archive: Path | None = None) -> None:
        self.run = run
        self.task = run.task
        self.settings = run.settings
        self.jobdir = run.jobdir
        self.checkpoints = checkpoints
        self.keep_archive = keep_archive
        self.zip_path = self.jobdir.zip_path(self.task.archive_name)
        self.paths: dict[int, str] = {}
        self.options = ArchiveOptions.for_task(self.task, self.settings)
        self.layout = ArchiveLayout(self.options.structure)

    def already_uploaded(self) -> Artifact | None:
        data = self.jobdir.read_state(self.jobdir.uploaded_state)
        try:
            return UploadedState.model_validate(data).artifact if data else None
        except ValidationError:
            return None

    def _pending_upload(self) -> UploadState | None:
        data = self.jobdir.read_state(self.jobdir.upload_state)
        try:
            return UploadState.model_validate(data) if data else None
        except ValidationError:
            return None

    async def finish(self, attemptids: list[int], entries: dict[int, CheckpointEntry]) -> Artifact:
        pending = self._pending_upload()
        if pending is None:  # else the ZIP is already in Moodle's draft area
            scratch = self.jobdir.scratch(0)
            writer = ArchiveWriter(
                self.zip_path, self.settings.zip_compression_algo, self.options.sidecars
            )
            try:
                if attemptids:
                    self.run.emit(Phase.RUNNING, f"building {self.task.archive_name}")
                    await asyncio.to_thread(self._add_attempts, writer, attemptids, entries)
                    if self.task.attempts and self.task.attempts.fetch_metadata:
                        await self._metadata(writer, attemptids)
                for backup in self.task.backups:
                    await self._backup(writer, backup, scratch)
            finally:
                writer.close()
            shutil.rmtree(scratch, ignore_errors=True)
        return await self._upload(pending)

    # --- attempts and metadata -----------------------------------------------------------------

    def _add_attempts(
        self, writer: ArchiveWriter, attemptids: list[int], entries: dict[int, CheckpointEntry]
    ) -> None:
        for attemptid in attemptids:
            entry = entries[attemptid]
            place = self.layout.attempt(attemptid, entry.foldername, entry.filename)
            for f in entry.files:
                source = self.checkpoints / "attempts" / str(attemptid) / f.path
                if writer.add_file(place.member(f.name), source) != f.sha256:
                    raise JobFailed(f"the checkpoint of attempt {attemptid} changed while zipping")
            self.paths[attemptid] = place.prefix

    async def _metadata(self, writer: ArchiveWriter, attemptids: list[int]) -> None:
        rows = await asyncio.to_thread(self.run.api.get_attempts_metadata, attemptids)
        data = build_metadata_csv(rows, self.paths)
        await asyncio.to_thread(writer.add_bytes, METADATA_CSV, data)

    # --- backups -------------------------------------------------------------------------------

    async def _backup(self, writer: ArchiveWriter, backup: BackupTask, scratch: Path) -> None:
        name = self.layout.backup(backup.filename)
        if self.settings.demo_mode:
            text = b"Backups are not included in archives made in demo mode.\n"
            await asyncio.to_thread(writer.add_bytes, name, text)
            return
        await self._wait_for_backup(backup)
        cap = min(
            self.settings.backup_download_max_filesize_bytes,
            self.settings.download_max_filesize_bytes,
        )
        url = backup.file_download_url
        content_type, length = await asyncio.to_thread(self.run.client.head, url)
        if content_type != BACKUP_CONTENT_TYPE:
            raise JobFailed(
                f"backup {backup.filename}: Moodle served {content_type or 'no content type'}, "
                f"expected {BACKUP_CONTENT_TYPE}"
            )
        if length is not None and length > cap:
            raise JobFailed(
                f"backup {backup.filename}: {length} bytes exceed the limit of {cap} bytes"
            )
        self.run.emit(self.run.phase, f"downloading backup {backup.filename}")
        local = scratch / "backups" / backup.filename
        await asyncio.to_thread(self.run.client.download, url, local, max_bytes=cap)
        await asyncio.to_thread(writer.add_file, name, local)
        local.unlink(missing_ok=True)

    async def _wait_for_backup(self, backup: BackupTask) -> None:
        announced = False
        while True:
            status = await self.run.race_retry(self.run.api.get_backup_status, backup.backupid)
            if status == BackupStatus.SUCCESS:
                return
            if status == BackupStatus.PENDING:
                if not announced:
                    announced = True
                    await asyncio.to_thread(
                        self.run.api.update_status, JobStatus.WAITING_FOR_BACKUP
                    )
                    self.run.limiter.touch()
                    self.run.emit(Phase.WAITING_FOR_BACKUP,
                                  f"waiting for backup {backup.filename}",
                                  moodle_status=str(JobStatus.WAITING_FOR_BACKUP))
                await asyncio.sleep(self.settings.backup_status_retry_sec)
                continue
            if status == BackupStatus.FAILED:
                raise JobFailed(f"Moodle reports that backup {backup.filename} failed")
            raise JobFailed(f"backup {backup.filename}: Moodle answered {status}")

    # --- upload --------------------------------------------------------------------------------

    async def _upload(self, pending: UploadState | None) -> Artifact:
        api, client = self.run.api, self.run.client
        if pending is None:
            await asyncio.to_thread(api.update_status, JobStatus.FINALIZING)
            self.run.emit(Phase.FINALIZING, "uploading the archive",
                          moodle_status=str(JobStatus.FINALIZING))
            checksum = await asyncio.to_thread(sha256_file, self.zip_path)
            artifact = Artifact(
                name=self.task.archive_name, size=self.zip_path.stat().st_size, sha256=checksum
            )
            if self.keep_archive is not None:
                await asyncio.to_thread(shutil.copyfile, self.zip_path, self.keep_archive)
            target = UploadTarget.of(self.task, self.settings.moodle_max_upload_bytes)
            delivered = await asyncio.to_thread(
                upload_archive, client, self.zip_path, artifact.name, target
            )
            pending = UploadState(
                artifact=artifact, draft=delivered.draft, artifact_count=delivered.artifact_count
            )
            await asyncio.to_thread(
                self.jobdir.write_state, self.jobdir.upload_state, pending.model_dump(mode="json")
            )
            resumed = False
        else:
            self.run.emit(Phase.FINALIZING, "the archive was uploaded before a restart; "
                          "asking Moodle to process it", moodle_status=str(JobStatus.FINALIZING))
            resumed = True
        try:
            await asyncio.to_thread(
                api.process_uploaded_artifact,
                pending.draft,
                pending.artifact.sha256,
                pending.artifact_count,
            )
        except (MoodleUnreachable, MoodleServerError) as exc:
            # No answer: Moodle may not have processed it. Whoever redelivers the call (the
            # operator) finds out: a processed job's token is gone. Not retried here.
            draft = PendingArtifact.of(
                pending.draft, pending.artifact.sha256, pending.artifact_count
            )
            raise ProcessingUndelivered(draft, exc) from None
        except (MoodleException, MoodleStatusError) as exc:
            # After a restart, "the job is over" means the pod before made this call and
            # died before recording it: Moodle stored the archive and dropped the token.
            answer = exc.errorcode if isinstance(exc, MoodleException) else exc.status
            if not resumed or verdict(answer) is not Verdict.ALREADY_FINAL:
                raise
            log.info("Moodle processed the archive before a restart",
                     extra={"fields": {"answer": answer}})  # fmt: skip
        await asyncio.to_thread(
            self.jobdir.write_state,
            self.jobdir.uploaded_state,
            UploadedState(artifact=pending.artifact).model_dump(mode="json"),
        )
        return pending.artifact
