"""The gateway's Moodle connection probes, each probe thread with its own kept-alive session.

A new `requests.Session` per probe meant a new pool and a new TCP (and TLS) connection
to Moodle for every task. Sessions here live in their thread; nothing of a task stays
in them (the token travels in the request body, cookies are cleared). A session idle
for longer than `idle_sec` is replaced before use: a server may close an idle
connection just as we send on it (keep-alive timeouts are 5 s and more), and a probe
is not retried.
"""

from __future__ import annotations

import threading
import time

import requests

from moodle_archive_job.moodle_api import probe_connection
from moodle_archive_job.task import ArchiveTask


class SessionProber:
    """A `Prober` (see intake) reusing one session per calling thread."""

    def __init__(self, idle_sec: float = 1.0) -> None:
        self.idle_sec = idle_sec
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's session, new if it was idle too long."""
        local = self._local
        session: requests.Session | None = getattr(local, "session", None)
        now = time.monotonic()
        if session is not None and now - local.last_used > self.idle_sec:
            session.close()
            session = None
        if session is None:
            session = local.session = requests.Session()
        local.last_used = now
        return session

    def __call__(self, task: ArchiveTask, token: str, timeout_sec: float) -> None:
        session = self.session()
        try:
            probe_connection(task, token, timeout_sec, session=session)
        finally:
            self._local.last_used = time.monotonic()
