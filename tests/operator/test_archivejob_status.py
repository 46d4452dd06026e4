"""The job pod's status sink: what it patches, how often, and that it never fails the job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from moodle_archive_job.archivejob_status import (
    ArchiveJobStatusSink,
    StatusSinkSettings,
    sink_from_env,
    status_patch,
)
from moodle_archive_job.final_status import PendingArtifact
from moodle_archive_job.logs import redact
from moodle_archive_job.progress import Artifact, Phase, ProgressEvent
from moodle_archive_operator.archivejob import ArchiveJobStatus


class FakeApiServer:
    """Answers PATCH (recorded) with `status`, GET with `get_status`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.status = 200
        self.get_status = 200
        self.get_body = b"{}"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(outer.get_status)
                self.send_header("Content-Length", str(len(outer.get_body)))
                self.end_headers()
                self.wfile.write(outer.get_body)

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [body["status"] for _, _, body in self.requests]


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.server.shutdown()


def event(phase: Phase, done: int = 0, **extra: Any) -> ProgressEvent:
    return ProgressEvent(phase=phase, attempts_done=done, attempts_total=4,
                         progress=25 * done, **extra)  # fmt: skip


def test_patch_holds_only_the_fields_the_pod_owns() -> None:
    artifact = Artifact(name="a.zip", size=10, sha256="AB" * 32)
    patch = status_patch(event(Phase.SUCCEEDED, 4, message="done", artifact=artifact))
    assert patch == {"status": {
        "runnerPhase": "Succeeded", "progress": 100, "attemptsDone": 4, "attemptsTotal": 4,
        "attemptsResumed": 0, "attemptsRerendered": 0, "message": "done",
        "artifact": {"name": "a.zip", "size": 10, "sha256": "ab" * 32},
    }}  # fmt: skip
    assert status_patch(event(Phase.RUNNING, 1))["status"]["moodleStatus"] == "RUNNING"
    failed = status_patch(event(Phase.FAILED, 1, moodle_status="FAILED", message="x"))
    assert failed["status"]["moodleStatus"] == "FAILED"
    assert "phase" not in failed["status"] and "conditions" not in failed["status"]


def test_what_moodle_could_not_be_told_is_left_for_the_operator() -> None:
    untold = status_patch(event(Phase.FAILED, 1, pending_moodle_status="FAILED", message="x"))
    assert untold["status"]["pendingMoodleStatus"] == "FAILED"
    assert "moodleStatus" not in untold["status"]
    artifact = PendingArtifact(
        component="user", contextid=18, userid=3, filearea="draft", filename="a.zip",
        filepath="/", itemid=7, sha256="ab" * 32,
    )  # fmt: skip
    pending = status_patch(event(Phase.FAILED, 1, pending_moodle_status="FINISHED",
                                 pending_artifact=artifact))["status"]  # fmt: skip
    assert pending["pendingArtifact"] == {
        "component": "user", "contextid": 18, "userid": 3, "filearea": "draft",
        "filename": "a.zip", "filepath": "/", "itemid": 7, "sha256": "ab" * 32,
    }  # fmt: skip
    # The CRD keeps what the pod writes (a structural schema prunes unknown fields).
    status = ArchiveJobStatus.model_validate(pending)
    assert status.pending_artifact == artifact and status.pending_moodle_status == "FINISHED"


def test_rate_limited_newest_state_wins_and_final_report_is_flushed(
    api: FakeApiServer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("sa-token-one\n")
    sink = ArchiveJobStatusSink(f"{api.url}/status", token, None, interval_sec=0.5)
    sink.emit(event(Phase.RUNNING, 0))
    time.sleep(0.2)
    for done in (1, 2, 3):  # within the interval: only the newest goes out
        sink.emit(event(Phase.RUNNING, done))
    time.sleep(0.8)
    token.write_text("sa-token-two\n")  # rotated by the kubelet
    sink.emit(event(Phase.FINALIZING, 4, moodle_status="FINALIZING"))
    sink.emit(event(Phase.SUCCEEDED, 4, message="Moodle accepted"))
    sink.close()
    bodies = api.bodies()
    assert [b["attemptsDone"] for b in bodies if b["runnerPhase"] == "Running"] == [0, 3]
    assert bodies[-1]["runnerPhase"] == "Succeeded" and bodies[-1]["progress"] == 100
    path, headers, _ = api.requests[-1]
    assert path == "/status"
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert headers["Authorization"] == "Bearer sa-token-two"
    assert api.requests[0][1]["Authorization"] == "Bearer sa-token-one"
    assert "sa-token-one" not in redact("log line with sa-token-one")


def test_api_errors_never_reach_the_job(api: FakeApiServer, tmp_path: Path) -> None:
    api.status = 403
    token = tmp_path / "token"
    token.write_text("t0k3n-value")
    sink = ArchiveJobStatusSink(f"{api.url}/status", token, None, interval_sec=0)
    sink.emit(event(Phase.RUNNING, 1))
    sink.emit(event(Phase.FAILED, 1, moodle_status="FAILED"))
    sink.close(timeout=5)
    assert sink.sent == 0 and api.requests  # tried, failed quietly
    missing = ArchiveJobStatusSink("http://127.0.0.1:9/status", tmp_path / "nope", None, 0)
    missing.emit(event(Phase.RUNNING))
    missing.close(timeout=5)
    assert missing.sent == 0


def test_configured_from_the_pods_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAO_ARCHIVEJOB_NAME", "MAO_KUBE_SERVER"):
        monkeypatch.delenv(name, raising=False)
    assert sink_from_env() is None
    monkeypatch.setenv("MAO_ARCHIVEJOB_NAME", "archive-1")
    monkeypatch.setenv("MAO_ARCHIVEJOB_NAMESPACE", "jobs")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert StatusSinkSettings().server() == "https://10.96.0.1:443"
    sink = sink_from_env()
    assert sink is not None
    assert sink.url == (
        "https://10.96.0.1:443/apis/moodlearchiver.io/v1alpha1/namespaces/jobs/archivejobs/"
        "archive-1/status"
    )
    sink.close(timeout=1)


def test_whether_the_archivejob_still_exists(api: FakeApiServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0k3n")
    sink = ArchiveJobStatusSink(f"{api.url}/status", token, None, interval_sec=0)
    api.get_body = b'{"metadata": {"name": "archive-1"}}'
    assert sink.archivejob_exists() is True
    api.get_body = b'{"metadata": {"deletionTimestamp": "2026-11-28T08:00:00Z"}}'
    assert sink.archivejob_exists() is False  # being deleted (foreground propagation)
    api.get_status = 404
    assert sink.archivejob_exists() is False
    api.get_status = 403
    assert sink.archivejob_exists() is None  # never had access: cannot tell
    sink.emit(event(Phase.RUNNING, 1))
    sink.close(timeout=5)
    assert sink.sent == 1
    for status in (401, 403):  # had access, lost it: its Role or ServiceAccount went with it
        api.get_status = status
        assert sink.archivejob_exists() is False
    api.get_status = 500
    assert sink.archivejob_exists() is None
