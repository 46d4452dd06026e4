"""Accepting one archive task: validate, check capacity, probe Moodle, persist.

Order (spec 2.3, plus this project's policy): parse with the reference worker's
messages -> allow-list -> capacity -> connection probe with the token -> create
the ArchiveJob -> count the live ArchiveJobs again, ours included (the atomic
re-check: several gateway replicas may race; see `_verify_within_capacity`) -> create its
token Secret, owned by it. Any failure after the ArchiveJob exists deletes what
was created, so a refused task leaves nothing behind. Every refusal is a
`RequestRejected` whose message is what Moodle shows the teacher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import SecretStr

from moodle_archive_job.moodle_client import MoodleUnreachable, ProbeFailed
from moodle_archive_job.request_parsing import (
    MSG_INVALID_REQUEST,
    RequestRejected,
    parse_archive_request,
)
from moodle_archive_job.task import ArchiveTask, Protocol

from ..archivejob import (
    archivejob_name,
    build_archivejob,
    build_token_secret,
    new_job_id,
    spec_from_task,
    token_secret_name,
)
from .capacity import Capacity, ListedCapacity
from .kube import KubeApi, KubeError
from .metrics import GatewayMetrics
from .moodle_policy import MoodlePolicy
from .prober import SessionProber
from .settings import GatewaySettings

log = logging.getLogger("moodle_archive_operator.gateway")

# (task, token, timeout_sec) -> None; raises ProbeFailed / MoodleUnreachable.
Prober = Callable[[ArchiveTask, str, float], None]

MSG_QUEUE_FULL = "Maximum number of queued jobs exceeded."
MSG_MOODLE_UNREACHABLE = "Connection to Moodle webservice failed. Cannot process request. Aborting."
MSG_STORE_FAILED = "The archive worker could not store the job. Please try again later."
MSG_OVERLOADED = "The archive worker is overloaded. Please try again later."
_ROLLBACK_TIMEOUT_SEC = 10.0


def probe_failed_message(ws_url: str) -> str:
    return (
        f'Could not establish a connection to Moodle webservice API at "{ws_url}" '
        "using the provided wstoken."
    )


@dataclass(frozen=True)
class Submission:
    job_id: str
    archivejob: dict[str, Any]
    task: ArchiveTask


class _Deadline:
    def __init__(self, budget_sec: float) -> None:
        self._end = time.monotonic() + budget_sec

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def timeout(self, cap: float) -> float:
        return max(0.2, min(cap, self.remaining()))


class TaskIntake:
    def __init__(
        self,
        settings: GatewaySettings,
        kube: KubeApi,
        metrics: GatewayMetrics,
        prober: Prober | None = None,
        capacity: Capacity | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.prober = prober or SessionProber()
        self.capacity = capacity or ListedCapacity(kube)
        self.policy = MoodlePolicy(
            sites=settings.allowed_moodle_urls, allow_private=settings.allow_private_moodle_hosts
        )
        # Probes that outlive their bound are abandoned here, not in the shared pool.
        self._probe_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="moodle-probe")

    def close(self) -> None:
        self._probe_pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, payload: Any, protocol: Protocol) -> Submission:
        deadline = _Deadline(self.settings.request_budget_sec)
        parsed = parse_archive_request(payload, protocol)
        task = parsed.task
        self.policy.check(task)
        await self.policy.check_resolved(task)
        await self._check_capacity(deadline)
        await self._probe(task, parsed.token, deadline)
        if deadline.remaining() < 1.0:
            raise RequestRejected(MSG_OVERLOADED, 503, "overloaded")

        job_id = new_job_id()
        spec = spec_from_task(task, job_id, self.settings.job_timeout_sec)
        manifest = build_archivejob(spec, self.kube.namespace)
        created = await self._create_archivejob(manifest, deadline)
        try:
            await self._verify_within_capacity(created, deadline)
            secret = build_token_secret(created, parsed.token, self.kube.namespace)
            await self.kube.create_secret(secret, deadline.timeout(self.settings.kube_timeout_sec))
        except KubeError as exc:
            await self._roll_back(job_id)
            log.error(
                "could not complete the ArchiveJob (capacity re-check or token Secret)",
                extra={"fields": {"job_id": job_id, "status": exc.status, "reason": exc.reason}},
            )
            raise RequestRejected(MSG_STORE_FAILED, 503, "store_failed") from None
        except BaseException:
            await self._roll_back(job_id)
            raise
        return Submission(job_id=job_id, archivejob=created, task=task)

    async def _check_capacity(self, deadline: _Deadline) -> None:
        try:
            timeout = deadline.timeout(self.settings.kube_timeout_sec)
            full = await self.capacity.is_full(self.settings.capacity, timeout)
        except KubeError as exc:
            log.error(
                "could not list ArchiveJobs",
                extra={"fields": {"status": exc.status, "reason": exc.reason}},
            )
            raise RequestRejected(MSG_STORE_FAILED, 503, "store_failed") from None
        if full:
            raise RequestRejected(MSG_QUEUE_FULL, 429, "queue_full")

    async def _probe(self, task: ArchiveTask, token: SecretStr, deadline: _Deadline) -> None:
        timeout = min(self.settings.probe_timeout_sec, max(1.0, deadline.remaining() - 3.0))
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        result = "ok"
        try:
            await asyncio.wait_for(
                loop.run_in_executor(
                    self._probe_pool, self.prober, task, token.get_secret_value(), timeout
                ),
                timeout + 0.5,
            )
        except ProbeFailed as exc:
            result = "failed"
            self._log_probe(task, "failed", str(exc), token)
            raise RequestRejected(
                probe_failed_message(task.moodle.ws_url), 400, "probe_failed"
            ) from None
        except (MoodleUnreachable, TimeoutError) as exc:
            result = "unreachable"
            self._log_probe(task, "unreachable", str(exc) or "timed out", token)
            raise RequestRejected(MSG_MOODLE_UNREACHABLE, 400, "moodle_unreachable") from None
        except Exception as exc:
            result = "error"
            self._log_probe(task, "error", f"{type(exc).__name__}: {exc}", token)
            raise RequestRejected(
                probe_failed_message(task.moodle.ws_url), 400, "probe_failed"
            ) from None
        finally:
            self.metrics.probe_latency.labels(result).observe(time.monotonic() - started)

    @staticmethod
    def _log_probe(task: ArchiveTask, result: str, detail: str, token: SecretStr) -> None:
        log.info(
            "Moodle connection probe %s",
            result,
            extra={
                "fields": {
                    "moodle": task.moodle.base_url,
                    "detail": detail.replace(token.get_secret_value(), "***"),
                }
            },
        )

    async def _create_archivejob(self, body: dict[str, Any], deadline: _Deadline) -> dict[str, Any]:
        name = body["metadata"]["name"]
        try:
            return await self.kube.create_archivejob(
                body, deadline.timeout(self.settings.kube_timeout_sec)
            )
        except KubeError as exc:
            log.error(
                "could not create the ArchiveJob",
                extra={"fields": {"name": name, "status": exc.status, "reason": exc.reason}},
            )
            if exc.ambiguous:
                await self._roll_back(body["spec"]["jobId"])
            if exc.status == 422:
                # The CRD refused what the parser accepted: a bug, but the task is still refused.
                raise RequestRejected(MSG_INVALID_REQUEST, 400, "rejected_by_api") from None
            raise RequestRejected(MSG_STORE_FAILED, 503, "store_failed") from None

    async def _verify_within_capacity(self, created: dict[str, Any], deadline: _Deadline) -> None:
        """The atomic re-check: count every live job, this one included.

        A count made after our create sees every job created before ours (a list, or
        the watched copy once it has our job's event: see `capacity`), so the last
        job of any set that would exceed capacity sees them all and backs out: never
        over capacity. Replicas racing for the last slots may all back out (429, the
        plugin's "try again later"); no order between them is needed, which matters
        because nothing visible to a client orders creations within one second.
        """
        timeout = deadline.timeout(self.settings.kube_timeout_sec)
        if await self.capacity.count_live_with(created, timeout) > self.settings.capacity:
            raise RequestRejected(MSG_QUEUE_FULL, 429, "queue_full")

    async def _roll_back(self, job_id: str) -> None:
        """Delete what may exist of a refused job; never raises, survives cancellation."""
        with anyio.CancelScope(shield=True):
            for what, delete, name in (
                ("ArchiveJob", self.kube.delete_archivejob, archivejob_name(job_id)),
                ("Secret", self.kube.delete_secret, token_secret_name(job_id)),
            ):
                try:
                    await delete(name, _ROLLBACK_TIMEOUT_SEC)
                except KubeError as exc:
                    log.error(
                        "could not delete %s of a refused task (left for garbage collection)",
                        what,
                        extra={"fields": {"name": name, "status": exc.status}},
                    )
