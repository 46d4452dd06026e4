"""Telling Moodle a final status with the task's token, when the job pod could not.

The token is read from the ArchiveJob's Secret just for this call, registered for
log redaction at once, and dropped afterwards. Never raises: the answer is returned.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import SecretStr

from moodle_archive_job.logs import register_secret
from moodle_archive_job.moodle_api import JobStatus, api_for
from moodle_archive_job.moodle_client import MoodleClient
from moodle_archive_job.settings import RunnerSettings

from ..archivejob import ArchiveJobSpec, task_from_spec
from .kube import Kube, KubeError

log = logging.getLogger(__name__)

NO_TOKEN = "NoToken"  # noqa: S105 - an answer name
UNREACHABLE = "Unreachable"


async def tell_moodle(
    kube: Kube, archivejob: dict[str, Any], status: JobStatus, timeout: float
) -> str:
    """Moodle's answer (`OK`, an `E_*` status), or NO_TOKEN / UNREACHABLE."""
    spec = archivejob["spec"]
    try:
        token = await kube.read_token(spec["tokenSecretName"])
    except KubeError as exc:
        log.warning("cannot read the token Secret", extra={"fields": {"status": exc.status}})
        return NO_TOKEN
    if token is None:
        return NO_TOKEN
    register_secret(token)
    task = task_from_spec(ArchiveJobSpec.model_validate(spec))
    verify_tls = not RunnerSettings().skip_https_cert_validation

    def call() -> str | None:
        client = MoodleClient(
            task.moodle,
            SecretStr(token),
            retries=2,
            backoff_sec=0.5,
            connect_timeout=min(5.0, timeout / 3),
            read_timeout=timeout / 3,
            verify_tls=verify_tls,
        )
        try:
            return api_for(task, client, spec["jobId"]).update_status(status)
        finally:
            client.close()

    try:
        answer = await asyncio.wait_for(asyncio.to_thread(call), timeout)
    except TimeoutError:
        answer = None
    return answer or UNREACHABLE
