"""Fixtures for running the job runner against the strict fake Moodle with real Chromium."""

from __future__ import annotations

import asyncio
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from moodle_archive_job.pipeline import JobContext, JobOutcome, run_job
from moodle_archive_job.progress import ProgressEvent
from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_job.settings import RunnerSettings
from tests.fakemoodle import FakeMoodle, Job


@dataclass
class CollectingSink:
    events: list[ProgressEvent] = field(default_factory=list)

    def emit(self, event: ProgressEvent) -> None:
        self.events.append(event)


@dataclass
class RunResult:
    outcome: JobOutcome
    jobid: str
    sink: CollectingSink
    job: Job

    def archive(self) -> zipfile.ZipFile:
        assert self.job.artifact is not None, "Moodle stored no artifact"
        return zipfile.ZipFile(BytesIO(self.job.artifact))


def fast_settings(tmp_path: Path, **overrides: Any) -> RunnerSettings:
    values: dict[str, Any] = {
        "pdfa_conversion": False,
        "status_reporting_interval_sec": 0,
        "moodle_retries": 1,
        "moodle_retry_backoff_sec": 0.05,
        "job_not_found_grace_sec": 10,
        "backup_status_retry_sec": 0.2,
        "wait_for_ready_signal_timeout_sec": 15,
        "work_dir": str(tmp_path),
    }
    values.update(overrides)
    return RunnerSettings(**values)


def run_fake_job(
    moodle: FakeMoodle,
    job: Job,
    settings: RunnerSettings,
    *,
    register: bool = True,
    token: str | None = None,
) -> RunResult:
    jobid = str(uuid.uuid4())
    if register:
        moodle.register_job(job, jobid)
    parsed = parse_archive_request(job.request_body, detect_protocol(job.request_body))
    if token is not None:
        from pydantic import SecretStr

        parsed = type(parsed)(task=parsed.task, token=SecretStr(token))
    sink = CollectingSink()
    outcome = asyncio.run(
        run_job(JobContext(task=parsed.task, token=parsed.token, job_id=jobid,
                           settings=settings, sink=sink))
    )
    return RunResult(outcome=outcome, jobid=jobid, sink=sink, job=job)


@pytest.fixture
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle() as fake:
        yield fake
