"""The attempt stage: fetch each report, render it, post-process it, fetch its attachments, and
checkpoint the result (several attempts in flight at once, in `attemptids` order of start).

An attempt counts as done only once its checkpoint is durable, so a pod killed mid-stage loses
at most the attempts in flight (`attempt_concurrency`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from .attempt_outcomes import as_attempt_failure, moodle_resources
from .checkpoint import CheckpointEntry, CheckpointStore
from .moodle_client import MoodleUnreachable, format_duration
from .settings import visible_cpus
from .stage import JobFailed, JobRun

AttemptDone = Callable[[CheckpointEntry], Awaitable[None]]


class RenderStage:
    def __init__(self, run: JobRun, store: CheckpointStore, on_done: AttemptDone) -> None:
        self.run = run
        self.task = run.task
        self.settings = run.settings
        self.store = store
        self.on_done = on_done
        # Rendering and post-processing are CPU work: at most one of each per CPU, while the
        # other attempts in flight fetch their reports (latency) or wait their turn. Fewer
        # renders at once also means fewer browser contexts (memory).
        cpu_bound = min(self.settings.attempt_concurrency, visible_cpus())
        self.renders = asyncio.Semaphore(cpu_bound)
        self.postprocessing = asyncio.Semaphore(cpu_bound)

    async def render(self, attemptids: list[int]) -> None:
        """Checkpoint every attempt of `attemptids`; the first failure cancels the rest."""
        if not attemptids:
            return
        from .render import Renderer  # Playwright only where rendering happens

        if self.settings.pdfa_conversion:
            await asyncio.to_thread(self._check_ghostscript)
        queue: Iterator[int] = iter(attemptids)

        async with Renderer(self.settings) as renderer:

            async def worker() -> None:
                for attemptid in queue:  # shared: each worker takes the next attempt
                    started = time.monotonic()
                    try:
                        entry = await self._process_attempt(attemptid, renderer)
                    except Exception as exc:
                        await self._blame_moodle(attemptid, exc, started)
                        raise as_attempt_failure(attemptid, exc) from None
                    await self.on_done(entry)

            workers = min(self.settings.attempt_concurrency, len(attemptids))
            tasks = [asyncio.create_task(worker()) for _ in range(workers)]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _blame_moodle(self, attemptid: int, exc: Exception, started: float) -> None:
        """A page whose resources on the Moodle site did not load, while the site does not
        answer at all: Moodle is down (MoodleUnreachable), not the page."""
        from .render import IncompletePage

        if not isinstance(exc, IncompletePage):
            return
        on_moodle = moodle_resources(exc.problems, self.task.moodle.base_url)
        if not on_moodle:
            return
        cause = await asyncio.to_thread(self.run.client.silent_because)
        if cause is None:
            return
        waited = format_duration(time.monotonic() - started)
        raise MoodleUnreachable(
            f"Moodle did not answer the page of attempt {attemptid} for {waited} ({cause}): "
            f"{on_moodle[0]}"
        ) from None

    def _check_ghostscript(self) -> None:
        from .pdf_postprocess import PdfaError, check_ghostscript

        gs = self.settings.ghostscript_binary()
        if gs is None:
            raise JobFailed("PDF/A conversion is on but Ghostscript (gs) is not installed")
        try:
            check_ghostscript(gs)
        except PdfaError as exc:
            raise JobFailed(f"PDF/A conversion is on but Ghostscript fails: {exc}") from None

    async def _process_attempt(self, attemptid: int, renderer: Any) -> CheckpointEntry:
        attempts = self.task.attempts
        assert attempts is not None
        report = await self.run.race_retry(self.run.api.generate_attempt_report, attemptid)
        folder = await asyncio.to_thread(self.store.staging, attemptid)
        files: list[tuple[str, str]] = []
        pdf = folder / "report.pdf"
        diagnostics = (
            self.run.jobdir.diagnostics / f"attempt-{attemptid}"
            if self.settings.keep_diagnostics
            else None
        )
        async with self.renders:
            rendered = await renderer.render_pdf(report.report, self.task.moodle.base_url, pdf,
                                                 attempts.paper_format, diagnostics)
        for missing in rendered.missing_resources:
            self.run.outcomes.warn(f"attempt {attemptid}: printed without {missing}")
        async with self.postprocessing:
            await asyncio.to_thread(self._postprocess_pdf, pdf, attemptid, diagnostics)
        files.append((f"{report.filename}.pdf", "report.pdf"))
        if attempts.keep_html_files:
            html = folder / "report.html"
            await asyncio.to_thread(html.write_text, report.report, "utf-8")
            files.append((f"{report.filename}.html", "report.html"))
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
                rel = f"attachments/{attachment.slot}/{attachment.filename}"
                await asyncio.to_thread(
                    self.run.client.download,
                    attachment.downloadurl,
                    folder / rel,
                    max_bytes=cap,
                    expected_sha1=attachment.contenthash,
                )
                files.append((rel, rel))
        return await asyncio.to_thread(
            self.store.commit, attemptid, report.foldername, report.filename, folder, files
        )

    def _postprocess_pdf(self, pdf: Path, attemptid: int, diagnostics: Path | None) -> None:
        attempts = self.task.attempts
        assert attempts is not None
        if attempts.image_optimize is None and not self.settings.pdfa_conversion:
            return
        from .pdf_postprocess import optimize_images
        from .pdfa_policy import make_pdfa

        if attempts.image_optimize is not None:
            optimize_images(pdf, attempts.image_optimize)
        if self.settings.pdfa_conversion:
            make_pdfa(pdf, attemptid, self.settings, self.run.outcomes, diagnostics)
