"""The job pod's progress in its own ArchiveJob's status: a ProgressSink for `run-job`.

The pod's ServiceAccount may only `get`/`patch` `archivejobs/status` of its own
ArchiveJob. This sink merge-patches `status.runnerPhase`, progress, attempts,
message, `moodleStatus`, the artifact and a final status Moodle could not be told
(`pendingMoodleStatus`, `pendingArtifact`: the operator redelivers it) from a background
thread, at most once per interval (phase changes and the final report go out at once),
always sending the newest state. It never raises and never fails the job: an API server that
cannot be reached only costs status updates.

Configured from the environment (the operator sets these on job pods):
MAO_ARCHIVEJOB_NAME and _NAMESPACE enable it; the API server is
MAO_KUBE_SERVER or https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT;
the bearer token and CA are read from MAO_KUBE_TOKEN_FILE and
MAO_KUBE_CA_FILE (the projected ServiceAccount token, re-read on
every request because the kubelet rotates it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .logs import register_secret
from .progress import Phase, ProgressEvent
from .reasons import one_line

log = logging.getLogger(__name__)

API_PATH = "/apis/moodlearchiver.io/v1alpha1/namespaces/{namespace}/archivejobs/{name}/status"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT})


class StatusSinkSettings(BaseSettings):
    # The control plane's prefix: the runner's own settings are MOODLE_ARCHIVER_*/QUIZ_ARCHIVER_*.
    model_config = SettingsConfigDict(env_prefix="MAO_", extra="ignore")

    archivejob_name: str | None = None
    archivejob_namespace: str | None = None
    kube_server: str | None = None
    kube_token_file: Path = Path(f"{SA_DIR}/token")
    kube_ca_file: Path | None = Path(f"{SA_DIR}/ca.crt")
    # Progress patches at most this often (phase changes and the final report at once).
    status_interval_sec: float = Field(default=2.0, ge=0)
    status_request_timeout_sec: float = Field(default=5.0, gt=0)

    def server(self) -> str | None:
        if self.kube_server:
            return self.kube_server.rstrip("/")
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            return None
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def status_patch(event: ProgressEvent) -> dict[str, Any]:
    """The status fields this pod owns, for one progress event (a JSON merge patch).

    In a sharded job every shard owns `shards["<index>"]`; only shard 0 (the finisher) owns
    the top-level fields.
    """
    shards: dict[str, Any] | None = None
    if event.shard is not None:
        shards = {str(event.shard.index): {
            "attemptsDone": max(0, event.shard.attempts_done),
            "attemptsTotal": max(0, event.shard.attempts_total),
            "phase": event.shard.phase.value,
            "attemptsResumed": max(0, event.shard.attempts_resumed),
            "attemptsRerendered": max(0, event.shard.attempts_rerendered),
        }}
        if event.shard.index != 0:
            return {"status": {"shards": shards}}
    status: dict[str, Any] = {
        "runnerPhase": event.phase.value,
        "progress": max(0, min(100, event.progress)),
        "attemptsDone": max(0, event.attempts_done),
        "attemptsTotal": max(0, event.attempts_total),
        "attemptsResumed": max(0, event.attempts_resumed),
        "attemptsRerendered": max(0, event.attempts_rerendered),
    }
    if shards is not None:
        status["shards"] = shards
    if event.message:
        status["message"] = one_line(event.message)
    if event.failed_attempts:
        status["failedAttempts"] = list(event.failed_attempts)
    if event.warnings:
        status["warnings"] = [one_line(w) for w in event.warnings]
    moodle_status = event.moodle_status or ("RUNNING" if event.phase is Phase.RUNNING else None)
    if moodle_status:
        status["moodleStatus"] = moodle_status
    if event.pending_moodle_status:
        status["pendingMoodleStatus"] = event.pending_moodle_status
    if event.pending_artifact is not None:
        artifact = event.pending_artifact
        status["pendingArtifact"] = artifact.model_dump(by_alias=True, exclude_none=True)
    if event.artifact is not None:
        status["artifact"] = {
            "name": event.artifact.name,
            "size": event.artifact.size,
            "sha256": event.artifact.sha256.lower(),
        }
    return {"status": status}


class ArchiveJobStatusSink:
    def __init__(
        self,
        url: str,
        token_file: Path,
        ca_file: Path | None,
        interval_sec: float = 2.0,
        request_timeout_sec: float = 5.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.token_file = token_file
        self.verify: str | bool = str(ca_file) if ca_file and ca_file.is_file() else True
        self.interval = interval_sec
        self.timeout = request_timeout_sec
        self._session = session or requests.Session()
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._urgent = False
        self._closing = False
        self._last_sent_at = float("-inf")
        self._last_phase: str | None = None
        self._failures = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="archivejob-status", daemon=True)
        self._thread.start()

    # --- ProgressSink --------------------------------------------------------------------------

    def emit(self, event: ProgressEvent) -> None:
        patch = status_patch(event)
        with self._cond:
            if self._closing:
                return
            self._pending = patch
            if event.phase is not None and (
                event.phase in TERMINAL or event.phase.value != self._last_phase
            ):
                self._urgent = True
            self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is pending (bounded by `timeout`) and stop the thread."""
        with self._cond:
            self._closing = True
            self._urgent = True
            self._cond.notify()
        self._thread.join(timeout)
        self._session.close()

    def archivejob_exists(self) -> bool | None:
        """Whether this pod's ArchiveJob still exists and is not being deleted (None: cannot
        tell).

        The pod's ServiceAccount, Role and RoleBinding are owned by the ArchiveJob: when the
        garbage collector removes them before this pod, the answer is 401 or 403 instead of
        404. After patches that went through, that too means the ArchiveJob is gone.
        """
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
            response = self._session.get(
                self.url,
                headers={"Authorization": f"Bearer {token}"},
                verify=self.verify,
                timeout=self.timeout,
            )
        except (OSError, requests.RequestException):
            return None
        if response.status_code == 404:
            return False
        if response.status_code in (401, 403):
            return False if self.sent else None
        if response.status_code != 200:
            return None
        try:
            metadata = response.json().get("metadata") or {}
        except (ValueError, AttributeError):
            return True
        return not metadata.get("deletionTimestamp")

    # --- background ----------------------------------------------------------------------------

    def _next(self) -> dict[str, Any] | None:
        """Wait until something is due; None when closing with nothing left."""
        with self._cond:
            while True:
                if self._pending is not None:
                    wait = self._last_sent_at + self.interval - self._clock()
                    if self._urgent or wait <= 0:
                        patch, self._pending, self._urgent = self._pending, None, False
                        return patch
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (patch := self._next()) is not None:
            self._last_sent_at = self._clock()
            if self._send(patch):
                self._last_phase = _phase_of(patch)
                continue
            with self._cond:  # keep the newest state for the next try, after a pause
                if self._pending is None:
                    self._pending = patch
                if self._closing:
                    return
                self._cond.wait(min(5.0, 0.5 * self._failures))

    def _send(self, patch: dict[str, Any]) -> bool:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
            register_secret(token)
            response = self._session.patch(
                self.url,
                json=patch,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/merge-patch+json",
                },
                verify=self.verify,
                timeout=self.timeout,
            )
        except (OSError, requests.RequestException) as exc:
            return self._failed(type(exc).__name__)
        if response.status_code >= 300:
            return self._failed(f"HTTP {response.status_code}")
        self._failures = 0
        self.sent += 1
        return True

    def _failed(self, why: str) -> bool:
        self._failures += 1
        if self._failures == 1 or self._failures % 20 == 0:
            log.warning(
                "could not update the ArchiveJob status",
                extra={"fields": {"error": why, "failures": self._failures}},
            )
        return False


def _phase_of(patch: dict[str, Any]) -> str | None:
    status = patch["status"]
    if "runnerPhase" in status:
        return str(status["runnerPhase"])
    return next((str(s["phase"]) for s in status.get("shards", {}).values()), None)


def sink_from_env(settings: StatusSinkSettings | None = None) -> ArchiveJobStatusSink | None:
    """The sink for this pod's ArchiveJob, or None when not running for one."""
    settings = settings or StatusSinkSettings()
    if not settings.archivejob_name or not settings.archivejob_namespace:
        return None
    server = settings.server()
    if server is None:
        log.warning("ArchiveJob status updates are off: no API server address")
        return None
    path = API_PATH.format(namespace=settings.archivejob_namespace, name=settings.archivejob_name)
    return ArchiveJobStatusSink(
        server + path,
        settings.kube_token_file,
        settings.kube_ca_file,
        settings.status_interval_sec,
        settings.status_request_timeout_sec,
    )
