"""``FakeMoodle``: the fake site plus a uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from . import plugin
from .app import FakeMoodleApp
from .faults import DownMode, FaultConfig
from .records import CallRecord, Recorder, token_hash
from .report_html import ReportOptions, render_report
from .state import Clock, Job, PluginRelease, Protocol, Quiz, Site, SiteConfig
from .ws_functions import QUIZ_ARCHIVER_SECTIONS


def default_mathjax_root() -> Path:
    """``$MOODLE_ARCHIVER_CACHE_DIR/npm/node_modules`` (where ``make setup`` installs MathJax)."""
    cache = os.environ.get("MOODLE_ARCHIVER_CACHE_DIR") or str(
        Path.home() / ".cache" / "moodle-archive-operator"
    )
    return Path(cache) / "npm" / "node_modules"


class FakeMoodle:
    """A strict fake of the Moodle side of quiz_archiver (API v7) and archivingmod_quiz (API v1).

    See the package docstring for the API. The server starts on ``start()`` / ``__enter__`` and
    listens on ``host:port`` (port 0 = a free port).
    """

    def __init__(
        self,
        report_latency: float = 0.0,
        mathjax_version: int | None = 3,
        max_upload_bytes: int | None = None,
        faults: FaultConfig | None = None,
        *,
        public_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        debug: bool = True,
        data_dir: str | Path | None = None,
        mathjax_root: str | Path | None = None,
        metadata_max_ids: int | None = 100,
        report_trailer: str = "</body></html>",
        plugin_release: PluginRelease = "4.1.0",
    ) -> None:
        if not host.startswith("127.") and host != "localhost":
            raise ValueError("the fake Moodle only listens on loopback addresses")
        self.faults = faults or FaultConfig()
        if report_latency:
            self.faults.report_latency = report_latency
        if max_upload_bytes is not None:
            self.faults.max_upload_bytes = max_upload_bytes
        self.host = host
        self._requested_port = port
        self._public_url = public_url.rstrip("/") if public_url else None
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="fakemoodle-"))
        self.clock = Clock()
        self.config = SiteConfig(
            debug=debug,
            mathjax_version=mathjax_version,
            metadata_max_ids=metadata_max_ids,
            report_trailer=report_trailer,
            plugin_release=plugin_release,
        )
        self.site = Site(self.data_dir, self.clock, self.config)
        self.recorder = Recorder()
        root = Path(mathjax_root) if mathjax_root else default_mathjax_root()
        self.mathjax_root = root if root.is_dir() else None
        self._app = FakeMoodleApp(self.site, self.faults, self.recorder, self.mathjax_root)
        self.faults._on_down = self._on_down
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self.port: int | None = None
        self._started_once = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeMoodle:
        with self._lifecycle:
            if self._server is not None:
                return self
            self._start_locked()
            self._started_once = True
        if self.faults.is_down == "refuse":
            self._stop_server()
        return self

    def _start_locked(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port if self.port is not None else self._requested_port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        base = f"http://{self.host}:{self.port}"
        self.config.internal_wwwroot = base
        self.config.wwwroot = self._public_url or base
        self._app._stop_flag = False
        config = uvicorn.Config(
            self._app.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fakemoodle-http", daemon=True
        )
        thread.start()
        deadline = time.time() + 10
        while not server.started:
            if not thread.is_alive() or time.time() > deadline:
                raise RuntimeError("fake Moodle server did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def _stop_server(self) -> None:
        with self._lifecycle:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None or thread is None:
                return
            self._app.stop()
            server.should_exit = True
            thread.join(timeout=10)

    def stop(self) -> None:
        """Stop the server and remove temporary files."""
        self._stop_server()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> FakeMoodle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_down(self, mode: DownMode | None) -> None:
        if not self._started_once:
            return
        if mode == "refuse":
            self._stop_server()
        elif mode is None:
            with self._lifecycle:
                if self._server is None:
                    self._start_locked()

    # -- URLs ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the URL workers use (``internal_wwwroot``)."""
        if self.port is None:
            raise RuntimeError("FakeMoodle not started")
        return f"http://{self.host}:{self.port}"

    @property
    def wwwroot(self) -> str:
        """The public ``$CFG->wwwroot`` (``public_url`` if given, else :attr:`base_url`)."""
        return self._public_url or self.base_url

    @property
    def ws_url(self) -> str:
        return f"{self.base_url}/webservice/rest/server.php"

    @property
    def upload_url(self) -> str:
        return f"{self.base_url}/webservice/upload.php"

    # -- data ---------------------------------------------------------------------------------

    def create_quiz(
        self,
        attempts: int = 3,
        name: str = "Reference Quiz",
        course_shortname: str = "QA",
        with_formulas: bool = True,
        attachments_per_attempt: int = 0,
        users: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Quiz:
        """See :func:`tests.fakemoodle.plugin.create_quiz` (extra: ``course_fullname``,
        ``mathjax_version``, ``preview_attempts``, ``login_redirect``)."""
        return plugin.create_quiz(
            self.site,
            attempts=attempts,
            name=name,
            course_shortname=course_shortname,
            with_formulas=with_formulas,
            attachments_per_attempt=attachments_per_attempt,
            users=users,
            **kwargs,
        )

    def create_job(
        self,
        quiz: Quiz,
        protocol: Protocol = "quiz_archiver",
        paper_format: str = "A4",
        keep_html_files: bool = False,
        backups: Iterable[str] = (),
        backup_ready_after: float = 0.0,
        backup_fails: bool = False,
        image_optimize: Any = None,
        sections: Mapping[str, Any] | None = None,
        foldername_pattern: str | None = None,
        filename_pattern: str | None = None,
        archive_filename_pattern: str | None = None,
        timeout_min: int = 60,
        attempts_subset: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> Job:
        """See :func:`tests.fakemoodle.plugin.create_job` (extra: ``backup_bytes``,
        ``auto_register_after``, ``archive_flatten``, ``archive_filehashes``)."""
        if self.port is None:
            raise RuntimeError("start the FakeMoodle before creating jobs (URLs need the port)")
        return plugin.create_job(
            self.site,
            quiz,
            protocol=protocol,
            paper_format=paper_format,
            keep_html_files=keep_html_files,
            backups=backups,
            backup_ready_after=backup_ready_after,
            backup_fails=backup_fails,
            image_optimize=image_optimize,
            sections=sections,
            foldername_pattern=foldername_pattern,
            filename_pattern=filename_pattern,
            archive_filename_pattern=archive_filename_pattern,
            timeout_min=timeout_min,
            attempts_subset=attempts_subset,
            faults=self.faults,
            **kwargs,
        )

    def register_job(self, job: Job, jobid: str, status: str | int = "AWAITING_PROCESSING") -> Job:
        """Moodle inserts the job row after the worker's ``200 {"jobid", "status"}``."""
        return plugin.register_job(self.site, job, jobid, status)

    def submit_job(
        self, job: Job, worker_url: str, register_delay: float = 0.0
    ) -> plugin.SubmitResult:
        """POST the job to a worker like the plugin does and register it on success."""
        return plugin.submit_job(self.site, job, worker_url, register_delay)

    def job(self, jobid: str) -> Job:
        """The job registered under the worker's ``jobid`` (quiz_archiver) or task uuid."""
        job = self.site.job_by_jobid(jobid)
        if job is None:
            raise KeyError(jobid)
        return job

    @property
    def jobs(self) -> list[Job]:
        with self.site.lock:
            return list(self.site.jobs)

    # -- time and Moodle-side actions ---------------------------------------------------------

    def advance_time(self, seconds: float) -> None:
        """Move the fake Moodle's clock (token expiry, job timeouts, backup readiness)."""
        self.clock.advance(seconds)

    def expire_job(self, job: Job) -> None:
        """Make the job older than its timeout: its token expires and report calls are refused."""
        with self.site.lock:
            shift = job.timeout_min * 60 + 1
            job.created -= shift
            if job.inserted is not None:
                job.inserted -= shift
            token = self.site.tokens.get(job.token)
            if token is not None:
                token.validuntil = int(self.clock.now()) - 1

    def open_archiver_page(self, quiz: Quiz) -> list[Job]:
        """A teacher opens the quiz archiver page: overdue non-final jobs become TIMEOUT."""
        changed = []
        with self.site.lock:
            for job in self.site.jobs:
                if job.quiz is not quiz or not job.registered or job.protocol != "quiz_archiver":
                    continue
                inserted = job.inserted if job.inserted is not None else job.created
                if not job.is_complete and inserted < self.clock.now() - job.timeout_min * 60:
                    self.site.set_status(job, "TIMEOUT", source="moodle")
                    changed.append(job)
        return changed

    def delete_job(self, job: Job) -> None:
        """A teacher deletes the job: row and token are gone."""
        with self.site.lock:
            self.site.delete_token(job.token)
            job.registered = False
            for backup in job.backups:
                backup.deleted = True

    # -- records ------------------------------------------------------------------------------

    @property
    def calls(self) -> list[CallRecord]:
        """Every request received so far, in arrival order."""
        return self.recorder.all()

    def calls_for(self, jobid: str) -> list[CallRecord]:
        """The requests of one job: those naming its job id or carrying its token."""
        job = self.site.job_by_jobid(jobid)
        fingerprint = token_hash(job.token) if job is not None else None
        return [
            c
            for c in self.recorder.all()
            if c.jobid == jobid or (fingerprint is not None and c.token_hash == fingerprint)
        ]

    def ws_calls(self, wsfunction: str | None = None) -> list[CallRecord]:
        return [
            c
            for c in self.calls
            if c.endpoint == "rest" and (wsfunction is None or c.wsfunction == wsfunction)
        ]

    @property
    def login_requests(self) -> list[CallRecord]:
        return [c for c in self.calls if c.endpoint == "login"]

    def clear_calls(self) -> None:
        self.recorder.clear()

    # -- report pages -------------------------------------------------------------------------

    def report_html(self, attemptid: int, sections: Mapping[str, bool] | None = None) -> str:
        """The report page Moodle would return for an attempt (all sections on by default)."""
        found = self.site.attempt_by_id(attemptid)
        if found is None:
            raise KeyError(attemptid)
        quiz, attempt = found
        flags = {name: True for name in QUIZ_ARCHIVER_SECTIONS}
        flags.update(sections or {})
        version = (
            quiz.mathjax_version
            if quiz.mathjax_version is not None
            else self.config.mathjax_version
        )
        options = ReportOptions(
            wwwroot=self.wwwroot,
            mathjax_version=version,
            mathjax_fault=self.faults.mathjax,
            login_redirect=self.faults.login_redirect,
            archived=self.clock.now(),
        )
        return render_report(
            quiz,
            self.site.courses[quiz.courseid],
            attempt,
            self.site.users[attempt.userid],
            flags,
            options,
        )

    def mathjax_available(self, version: int) -> bool:
        """True when the npm MathJax package for ``version`` is installed locally."""
        if self.mathjax_root is None:
            return False
        name = {
            2: "mathjax2/MathJax.js",
            3: "mathjax3/es5/tex-mml-chtml.js",
            4: "mathjax4/tex-mml-chtml.js",
        }[version]
        return (self.mathjax_root / name).is_file()
