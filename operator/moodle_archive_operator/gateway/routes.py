"""HTTP routes: the reference worker's API (under the optional secret prefix) and ops endpoints."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response

from moodle_archive_job.request_parsing import RequestRejected
from moodle_archive_job.task import Protocol

from ..archivejob import archivejob_name, build_event, is_job_id
from .body import read_json_body
from .capacity import Capacity
from .intake import Submission, TaskIntake
from .jobqueue import job_status_string, queue_view, worker_status
from .kube import KubeApi, KubeError
from .metrics import GatewayMetrics
from .schemas import (
    AppInfo,
    ArchiveAccepted,
    ArchivingmodQuizV1Request,
    Health,
    JobStatus,
    QuizArchiverV7Request,
    VersionInfo,
    WorkerStatus,
    error_responses,
)
from .settings import GatewaySettings

log = logging.getLogger("moodle_archive_operator.gateway")

APP_NAME = "moodle-archive-operator"
EVENT_COMPONENT = "moodle-archiver-gateway"
MSG_STORE_UNAVAILABLE = "The archive worker cannot read its job store right now."


def app_version() -> str:
    try:
        return version("moodle-archive-operator")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class Gateway:
    settings: GatewaySettings
    kube: KubeApi
    intake: TaskIntake
    metrics: GatewayMetrics
    capacity: Capacity


def _error(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


def _body_doc(model: type) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def worker_router(gw: Gateway) -> APIRouter:
    """`/archive...`, `/`, `/version`, `/status`, `/status/{jobid}` (spec 2.1)."""
    router = APIRouter()
    archive_responses = error_responses(400, 403, 413, 429, 503)

    async def archive(request: Request, background: BackgroundTasks, protocol: Protocol) -> Any:
        started = time.monotonic()
        try:
            payload = await read_json_body(request, gw.settings.max_request_bytes)
            submission = await gw.intake.submit(payload, protocol)
        except RequestRejected as exc:
            gw.metrics.observe_rejected(protocol.value, exc.reason, time.monotonic() - started)
            log.info(
                "archive task refused: %s",
                exc.message,
                extra={
                    "fields": {
                        "protocol": protocol.value,
                        "reason": exc.reason,
                        "status": exc.status_code,
                        "client": request.client.host if request.client else None,
                    }
                },
            )
            retry = {"Retry-After": "30"} if exc.status_code in (429, 503) else None
            return _error(exc.status_code, exc.message, retry)
        elapsed = time.monotonic() - started
        gw.metrics.observe_accepted(protocol.value, elapsed)
        task = submission.task
        log.info(
            "archive task accepted",
            extra={
                "fields": {
                    "job_id": submission.job_id,
                    "archivejob": submission.archivejob["metadata"]["name"],
                    "protocol": protocol.value,
                    "moodle": task.moodle.base_url,
                    "courseid": task.courseid,
                    "cmid": task.cmid,
                    "quizid": task.quizid,
                    "taskid": task.taskid,
                    "attempts": task.attempt_count,
                    "backups": len(task.backups),
                    "duration_ms": round(elapsed * 1000, 1),
                }
            },
        )
        if gw.settings.accepted_events:
            background.add_task(_post_accepted_event, gw, submission)
        return ArchiveAccepted(jobid=submission.job_id)

    endpoints = (
        ("/archive", Protocol.QUIZ_ARCHIVER_V7, QuizArchiverV7Request),
        ("/archive/quiz_archiver", Protocol.QUIZ_ARCHIVER_V7, QuizArchiverV7Request),
        ("/archive/archivingmod_quiz", Protocol.ARCHIVINGMOD_QUIZ_V1, ArchivingmodQuizV1Request),
    )

    def enqueue_for(protocol: Protocol) -> Callable[..., Awaitable[Any]]:
        async def enqueue(request: Request, background: BackgroundTasks) -> Any:
            return await archive(request, background, protocol)

        return enqueue

    for path, protocol, body_model in endpoints:
        router.add_api_route(
            path,
            enqueue_for(protocol),
            methods=["POST"],
            response_model=ArchiveAccepted,
            responses=archive_responses,
            openapi_extra=_body_doc(body_model),
            summary=f"Enqueue a {protocol.value} archive task",
            operation_id="archive" + path.replace("/", "_"),
        )

    @router.get("/", response_model=AppInfo)
    async def index() -> AppInfo:
        return AppInfo(app=APP_NAME, version=app_version())

    @router.get("/version", response_model=VersionInfo)
    async def version_info() -> VersionInfo:
        return VersionInfo(version=app_version())

    @router.get("/status", response_model=WorkerStatus, responses=error_responses(503))
    async def status() -> Any:
        try:
            items = await gw.kube.list_archivejobs(gw.settings.kube_timeout_sec)
        except KubeError:
            return _error(503, MSG_STORE_UNAVAILABLE, {"Retry-After": "10"})
        view = queue_view(items)
        settings = gw.settings
        return WorkerStatus(
            status=worker_status(view, settings.max_parallel_jobs, settings.queue_size),
            jobs_processing=view.processing,
            jobs_queued=view.queued,
            jobs_max=settings.max_parallel_jobs,
            queue_max=settings.queue_size,
        )

    @router.get("/status/{jobid}", response_model=JobStatus, responses=error_responses(404, 503))
    async def job_status(jobid: str) -> Any:
        not_found = _error(404, f"Job with requested jobid '{jobid}' was not found")
        job_id = jobid.lower()
        if not is_job_id(job_id):
            return not_found
        try:
            name = archivejob_name(job_id)
            obj = await gw.kube.get_archivejob(name, gw.settings.kube_timeout_sec)
        except KubeError:
            return _error(503, MSG_STORE_UNAVAILABLE, {"Retry-After": "10"})
        if obj is None:
            return not_found
        return JobStatus(id=job_id, status=job_status_string(obj))

    return router


def ops_router(gw: Gateway) -> APIRouter:
    """Liveness, readiness and metrics: outside the secret prefix, for kubelet and Prometheus."""
    router = APIRouter()

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get("/readyz", response_model=Health, responses=error_responses(503))
    async def readyz() -> Any:
        try:
            ready = await gw.capacity.ready(min(2.0, gw.settings.kube_timeout_sec))
        except KubeError:
            ready = False
        if not ready:
            return _error(503, "Cannot list ArchiveJobs: API server unreachable or CRD missing.")
        return Health(status="ready")

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(gw.metrics.render(), media_type=gw.metrics.content_type)

    return router


async def _post_accepted_event(gw: Gateway, submission: Submission) -> None:
    task = submission.task
    message = (
        f"Accepted {task.protocol.value} task from {task.moodle.base_url}: "
        f"{task.attempt_count} attempts, {len(task.backups)} backups"
    )
    event = build_event(submission.archivejob, "Accepted", message, EVENT_COMPONENT)
    try:
        await gw.kube.create_event(event, gw.settings.kube_timeout_sec)
    except KubeError as exc:
        log.warning(
            "could not record the Accepted event",
            extra={"fields": {"job_id": submission.job_id, "status": exc.status}},
        )
