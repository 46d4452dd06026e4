"""One archive job from start to upload, in Moodle's order (spec 4.1).

RUNNING -> attempts (fetch report, render, post-process, attachments; several in
flight at once, committed to the ZIP in `attemptids` order) -> metadata CSV ->
backups (WAITING_FOR_BACKUP while pending) -> FINALIZING -> upload ->
process_uploaded_artifact. Any failure sends FAILED, the deadline sends TIMEOUT;
FINISHED is never sent (Moodle sets it and deletes the token itself).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from .archive_writer import ArchiveWriter, sha256_file
from .folders import FolderAllocator
from .logs import redact, register_secret
from .metadata_csv import build_metadata_csv
from .moodle_api import BackupStatus, JobStatus, MoodleApi, api_for
from .moodle_client import MoodleClient, MoodleError, MoodleStatusError
from .progress import (
    Artifact,
    MoodleProgressLimiter,
    Phase,
    ProgressEvent,
    ProgressSink,
    percent,
)
from .settings import RunnerSettings, visible_cpus
from .task import ArchiveTask, BackupTask
from .version import VERSION

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKUP_CONTENT_TYPE = "application/vnd.moodle.backup"
DEMO_MODE_MAX_ATTEMPTS = 10
RACE_RETRY_SEC = 1.0


class JobFailed(Exception):
    """The job cannot succeed; the message is one line, safe to show."""


class JobOutcome(BaseModel):
    phase: Phase
    message: str
    attempts_done: int
    attempts_total: int
    duration_sec: float
    artifact: Artifact | None = None

    @property
    def succeeded(self) -> bool:
        return self.phase is Phase.SUCCEEDED


@dataclass
class JobContext:
    task: ArchiveTask
    token: SecretStr
    job_id: str
    settings: RunnerSettings
    sink: ProgressSink
    allowed_download_origins: frozenset[tuple[str, str, int | None]] = frozenset()
    keep_archive: Path | None = None


@dataclass
class _AttemptFiles:
    attemptid: int
    foldername: str
    filename: str
    files: list[tuple[str, Path]] = field(default_factory=list)


def _proxies(settings: RunnerSettings) -> dict[str, str] | None:
    url = settings.proxy_server_url
    if url is None:
        return None  # requests' own environment detection applies
    if url.strip().lower() == "false":
        return {}
    return {"http": url, "https": url}


async def run_job(ctx: JobContext) -> JobOutcome:
    register_secret(ctx.token.get_secret_value())
    settings = ctx.settings
    client = MoodleClient(
        ctx.task.moodle,
        ctx.token,
        retries=settings.moodle_retries,
        backoff_sec=settings.moodle_retry_backoff_sec,
        connect_timeout=settings.moodle_connect_timeout_sec,
        read_timeout=settings.moodle_read_timeout_sec,
        transfer_timeout=settings.moodle_transfer_timeout_sec,
        verify_tls=not settings.skip_https_cert_validation,
        proxies=_proxies(settings),
    )
    api = api_for(ctx.task, client, ctx.job_id, ctx.allowed_download_origins)
    work_dir = Path(tempfile.mkdtemp(prefix="archive-job-", dir=settings.work_dir))
    run = _JobRun(ctx, api, client, work_dir)
    try:
        return await run.execute()
    finally:
        client.close()
        shutil.rmtree(work_dir, ignore_errors=True)


class _JobRun:
    def __init__(self, ctx: JobContext, api: MoodleApi, client: MoodleClient, work: Path) -> None:
        self.ctx = ctx
        self.task = ctx.task
        self.settings = ctx.settings
        self.api = api
        self.client = client
        self.scratch = work / "scratch"
        self.scratch.mkdir()
        self.zip_path = work / ctx.task.archive_name
        self.started = time.monotonic()
        self.grace_deadline = self.started + self.settings.job_not_found_grace_sec
        self.job_seen = False
        self.limiter = MoodleProgressLimiter(self.settings.status_reporting_interval_sec)
        self.attemptids = list(self.task.attempts.attemptids) if self.task.attempts else []
        if self.settings.demo_mode:
            self.attemptids = self.attemptids[:DEMO_MODE_MAX_ATTEMPTS]
        self.done = 0
        self.paths: dict[int, str] = {}
        self.phase = Phase.RUNNING
        # Rendering and post-processing are CPU work: at most one of each per CPU, while the
        # other attempts in flight fetch their reports (latency) or wait their turn. Fewer
        # renders at once also means fewer browser contexts (memory).
        cpu_bound = min(self.settings.attempt_concurrency, visible_cpus())
        self.renders = asyncio.Semaphore(cpu_bound)
        self.postprocessing = asyncio.Semaphore(cpu_bound)

    # --- outcome -------------------------------------------------------------------------------

    def _event(self, phase: Phase, message: str = "", **extra: Any) -> ProgressEvent:
        total = len(self.attemptids)
        return ProgressEvent(
            phase=phase,
            attempts_done=self.done,
            attempts_total=total,
            progress=100 if phase is Phase.SUCCEEDED else percent(self.done, total),
            message=message,
            **extra,
        )

    def _emit(self, phase: Phase, message: str = "", **extra: Any) -> None:
        self.phase = phase
        self.ctx.sink.emit(self._event(phase, message, **extra))

    def _outcome(self, phase: Phase, message: str, artifact: Artifact | None = None) -> JobOutcome:
        return JobOutcome(
            phase=phase,
            message=message,
            attempts_done=self.done,
            attempts_total=len(self.attemptids),
            duration_sec=round(time.monotonic() - self.started, 3),
            artifact=artifact,
        )

    async def execute(self) -> JobOutcome:
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_sec
        try:
            async with asyncio.timeout_at(deadline):
                artifact = await self._archive()
        except TimeoutError:
            message = (
                f"job runtime limit of {self.settings.request_timeout_sec:g} s reached "
                f"({self.phase}, {self.done}/{len(self.attemptids)} attempts)"
            )
            await self._final_status(JobStatus.TIMEOUT)
            self._emit(Phase.TIMED_OUT, message, moodle_status=str(JobStatus.TIMEOUT))
            return self._outcome(Phase.TIMED_OUT, message)
        except Exception as exc:  # every failure ends in FAILED at Moodle and a clear message
            message = _one_line(exc)
            log.error("job failed", extra={"fields": {"error": message}})
            await self._final_status(JobStatus.FAILED)
            self._emit(Phase.FAILED, message, moodle_status=str(JobStatus.FAILED))
            return self._outcome(Phase.FAILED, message)
        message = f"Moodle accepted {artifact.name} ({artifact.size} bytes)"
        self._emit(Phase.SUCCEEDED, message, artifact=artifact)
        return self._outcome(Phase.SUCCEEDED, message, artifact)

    async def _final_status(self, status: JobStatus) -> None:
        # Bounded: the token may already be gone (Moodle deletes it on its own final states).
        try:
            await asyncio.wait_for(asyncio.to_thread(self.api.update_status, status), timeout=30)
        except TimeoutError:
            log.warning("could not tell Moodle the final status in time")

    # --- the job -------------------------------------------------------------------------------

    async def _archive(self) -> Artifact:
        await self._start()
        writer = ArchiveWriter(self.zip_path, self.settings.zip_compression_algo)
        try:
            if self.attemptids:
                await self._attempts(writer)
                if self.task.attempts and self.task.attempts.fetch_metadata:
                    await self._metadata(writer)
            for backup in self.task.backups:
                await self._backup(writer, backup)
        finally:
            writer.close()
        return await self._upload()

    async def _start(self) -> None:
        self._emit(Phase.RUNNING, "starting")
        while True:
            answer = await asyncio.to_thread(self.api.update_status, JobStatus.RUNNING, 0)
            self.limiter.touch()
            if answer == "OK":
                self.job_seen = True
                return
            if answer not in self.api.job_not_found_statuses:
                return  # logged by update_status; never fatal (spec 3.3)
            if time.monotonic() >= self.grace_deadline:
                raise JobFailed(
                    "Moodle does not know this job (it never registered the job id); giving up"
                )
            await asyncio.sleep(RACE_RETRY_SEC)

    async def _race_retry(self, fn: Any, *args: Any) -> Any:
        """Retry while Moodle has not inserted the job row yet (spec 4.6), then fail fast."""
        while True:
            try:
                result = await asyncio.to_thread(fn, *args)
            except MoodleStatusError as exc:
                if (
                    exc.status in self.api.job_not_found_statuses
                    and not self.job_seen
                    and time.monotonic() < self.grace_deadline
                ):
                    await asyncio.sleep(RACE_RETRY_SEC)
                    continue
                raise
            self.job_seen = True
            return result

    # --- attempts ------------------------------------------------------------------------------

    async def _attempts(self, writer: ArchiveWriter) -> None:
        from .render import Renderer  # Playwright only where rendering happens

        attempts = self.task.attempts
        assert attempts is not None
        if self.settings.pdfa_conversion:
            await asyncio.to_thread(self._check_ghostscript)
        concurrency = self.settings.attempt_concurrency
        window = 2 * concurrency  # started but not yet in the ZIP: bounds the scratch space
        work = asyncio.Semaphore(concurrency)
        allocator = FolderAllocator()
        self._emit(Phase.RUNNING, f"rendering {len(self.attemptids)} attempts")

        async with Renderer(self.settings) as renderer:

            async def one(attemptid: int) -> _AttemptFiles:
                async with work:
                    return await self._process_attempt(attemptid, renderer)

            tasks: list[asyncio.Task[_AttemptFiles]] = []
            try:
                for index in range(len(self.attemptids)):
                    while len(tasks) < min(len(self.attemptids), index + window):
                        tasks.append(asyncio.create_task(one(self.attemptids[len(tasks)])))
                    result = await _first_failure_or(tasks[index], tasks[index + 1 :])
                    await asyncio.to_thread(self._commit_attempt, writer, allocator, result)
                    await self._attempt_done()
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _check_ghostscript(self) -> None:
        from .pdf_postprocess import PdfaError, check_ghostscript

        gs = self.settings.ghostscript_binary()
        if gs is None:
            raise JobFailed("PDF/A conversion is on but Ghostscript (gs) is not installed")
        try:
            check_ghostscript(gs)
        except PdfaError as exc:
            raise JobFailed(f"PDF/A conversion is on but Ghostscript fails: {exc}") from None

    async def _process_attempt(self, attemptid: int, renderer: Any) -> _AttemptFiles:
        attempts = self.task.attempts
        assert attempts is not None
        report = await self._race_retry(self.api.generate_attempt_report, attemptid)
        folder = self.scratch / f"attempt-{attemptid}"
        folder.mkdir()
        result = _AttemptFiles(attemptid, report.foldername, report.filename)
        pdf = folder / "report.pdf"
        async with self.renders:
            await renderer.render_pdf(report.report, self.task.moodle.base_url, pdf,
                                      attempts.paper_format)
        async with self.postprocessing:
            await asyncio.to_thread(self._postprocess_pdf, pdf)
        result.files.append((f"{report.filename}.pdf", pdf))
        if attempts.keep_html_files:
            html = folder / "report.html"
            await asyncio.to_thread(html.write_text, report.report, "utf-8")
            result.files.append((f"{report.filename}.html", html))
        if attempts.fetch_attachments:
            cap = min(
                self.settings.question_attachment_download_max_filesize_bytes,
                self.settings.download_max_filesize_bytes,
            )
            seen: set[tuple[int, str]] = set()
            for attachment in report.attachments:
                key = (attachment.slot, attachment.filename)
                if key in seen:
                    raise JobFailed(
                        f"attempt {attemptid}: Moodle listed attachment {attachment.filename!r} "
                        f"of slot {attachment.slot} twice"
                    )
                seen.add(key)
                local = folder / "attachments" / str(attachment.slot) / attachment.filename
                await asyncio.to_thread(
                    self.client.download,
                    attachment.downloadurl,
                    local,
                    max_bytes=cap,
                    expected_sha1=attachment.contenthash,
                )
                result.files.append(
                    (f"attachments/{attachment.slot}/{attachment.filename}", local)
                )
        return result

    def _postprocess_pdf(self, pdf: Path) -> None:
        attempts = self.task.attempts
        assert attempts is not None
        if attempts.image_optimize is None and not self.settings.pdfa_conversion:
            return
        from .pdf_postprocess import convert_to_pdfa, optimize_images

        if attempts.image_optimize is not None:
            optimize_images(pdf, attempts.image_optimize)
        if self.settings.pdfa_conversion:
            gs = self.settings.ghostscript_binary()
            assert gs is not None
            convert_to_pdfa(pdf, gs, self.settings.pdfa_conversion_timeout_sec, VERSION)

    def _commit_attempt(
        self, writer: ArchiveWriter, allocator: FolderAllocator, result: _AttemptFiles
    ) -> None:
        folder = allocator.allocate(result.foldername, result.attemptid)
        base = f"attempts/{folder}"
        for name, path in result.files:
            writer.add_file(f"{base}/{name}", path)
        self.paths[result.attemptid] = f"{base}/{result.filename}"
        shutil.rmtree(self.scratch / f"attempt-{result.attemptid}", ignore_errors=True)

    async def _attempt_done(self) -> None:
        self.done += 1
        self._emit(Phase.RUNNING, f"attempt {self.done} of {len(self.attemptids)} archived")
        if self.limiter.due() and self.done < len(self.attemptids):
            self.limiter.touch()
            progress = percent(self.done, len(self.attemptids))
            await asyncio.to_thread(self.api.update_status, JobStatus.RUNNING, progress)

    async def _metadata(self, writer: ArchiveWriter) -> None:
        rows = await asyncio.to_thread(self.api.get_attempts_metadata, self.attemptids)
        data = build_metadata_csv(rows, self.paths)
        await asyncio.to_thread(writer.add_bytes, "attempts_metadata.csv", data)

    # --- backups -------------------------------------------------------------------------------

    async def _backup(self, writer: ArchiveWriter, backup: BackupTask) -> None:
        name = f"backups/{backup.filename}"
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
        content_type, length = await asyncio.to_thread(self.client.head, url)
        if content_type != BACKUP_CONTENT_TYPE:
            raise JobFailed(
                f"backup {backup.filename}: Moodle served {content_type or 'no content type'}, "
                f"expected {BACKUP_CONTENT_TYPE}"
            )
        if length is not None and length > cap:
            raise JobFailed(
                f"backup {backup.filename}: {length} bytes exceed the limit of {cap} bytes"
            )
        self._emit(self.phase, f"downloading backup {backup.filename}")
        local = self.scratch / "backups" / backup.filename
        await asyncio.to_thread(self.client.download, url, local, max_bytes=cap)
        await asyncio.to_thread(writer.add_file, name, local)
        local.unlink(missing_ok=True)

    async def _wait_for_backup(self, backup: BackupTask) -> None:
        announced = False
        while True:
            status = await self._race_retry(self.api.get_backup_status, backup.backupid)
            if status == BackupStatus.SUCCESS:
                return
            if status == BackupStatus.PENDING:
                if not announced:
                    announced = True
                    await asyncio.to_thread(self.api.update_status, JobStatus.WAITING_FOR_BACKUP)
                    self.limiter.touch()
                    self._emit(Phase.WAITING_FOR_BACKUP, f"waiting for backup {backup.filename}",
                               moodle_status=str(JobStatus.WAITING_FOR_BACKUP))
                await asyncio.sleep(self.settings.backup_status_retry_sec)
                continue
            if status == BackupStatus.FAILED:
                raise JobFailed(f"Moodle reports that backup {backup.filename} failed")
            raise JobFailed(f"backup {backup.filename}: Moodle answered {status}")

    # --- upload --------------------------------------------------------------------------------

    async def _upload(self) -> Artifact:
        await asyncio.to_thread(self.api.update_status, JobStatus.FINALIZING)
        self._emit(Phase.FINALIZING, "uploading the archive",
                   moodle_status=str(JobStatus.FINALIZING))
        checksum = await asyncio.to_thread(sha256_file, self.zip_path)
        artifact = Artifact(
            name=self.task.archive_name, size=self.zip_path.stat().st_size, sha256=checksum
        )
        if self.ctx.keep_archive is not None:
            await asyncio.to_thread(shutil.copyfile, self.zip_path, self.ctx.keep_archive)
        uploaded = await asyncio.to_thread(self.client.upload, self.zip_path, artifact.name)
        await asyncio.to_thread(self.api.process_uploaded_artifact, uploaded, checksum)
        return artifact


async def _first_failure_or(
    wanted: asyncio.Task[T], others: list[asyncio.Task[Any]]
) -> T:
    """Await `wanted`, but raise at once if any of `others` fails first."""
    pending: set[asyncio.Task[Any]] = {wanted, *others}
    while True:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is wanted or task.exception() is not None:
                return await task if task is wanted else task.result()


def _one_line(exc: BaseException) -> str:
    known = isinstance(exc, JobFailed | MoodleError)
    text = str(exc) if known else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()))[:500] or type(exc).__name__
