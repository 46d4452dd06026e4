"""One try at telling Moodle a job's end, with the token from its Secret.

The token is read from the Secret just for this call, registered for log redaction at
once, and dropped afterwards. Never raises: Moodle's answer is returned (see
`moodle_archive_job.final_status`); whether to try again is `delivery`'s business.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import SecretStr

from moodle_archive_job.final_status import NO_TOKEN, UNREACHABLE, PendingArtifact, deliver
from moodle_archive_job.logs import register_secret
from moodle_archive_job.moodle_api import JobStatus, api_for
from moodle_archive_job.moodle_client import MoodleClient
from moodle_archive_job.settings import RunnerSettings
from moodle_archive_job.task import ArchiveTask

from .kube import Kube, KubeError

log = logging.getLogger(__name__)


async def tell_moodle(
    kube: Kube,
    secret_name: str,
    task: ArchiveTask,
    job_id: str,
    status: JobStatus,
    timeout: float,
    artifact: PendingArtifact | None = None,
) -> str:
    """Moodle's answer (`OK`, an `E_*` status, an error code), or NO_TOKEN / UNREACHABLE."""
    try:
        token = await kube.read_token(secret_name)
    except KubeError as exc:
        log.warning("cannot read the token Secret", extra={"fields": {"status": exc.status}})
        return UNREACHABLE if exc.status is None or exc.status >= 500 else NO_TOKEN
    if token is None:
        return NO_TOKEN
    register_secret(token)
    verify_tls = not RunnerSettings().skip_https_cert_validation

    def call() -> str:
        client = MoodleClient(
            task.moodle,
            SecretStr(token),
            retries=1,
            backoff_sec=0.5,
            connect_timeout=min(5.0, timeout / 3),
            read_timeout=timeout / 2,
            transfer_timeout=timeout / 2,
            verify_tls=verify_tls,
        )
        try:
            return deliver(api_for(task, client, job_id), status, artifact)
        finally:
            client.close()

    try:
        return await asyncio.wait_for(asyncio.to_thread(call), timeout)
    except TimeoutError:
        return UNREACHABLE
