"""The gateway's FastAPI application: a drop-in archive worker endpoint for both plugins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from moodle_archive_job.request_parsing import MSG_INVALID_REQUEST

from .capacity import Capacity, ListedCapacity, WatchedCapacity
from .intake import Prober, TaskIntake
from .kube import KubeApi, KubernetesApi
from .livejobs import ArchiveJobWatchSource, LiveJobCache
from .metrics import GatewayMetrics
from .routes import Gateway, app_version, ops_router, worker_router
from .schemas import ArchivingmodQuizV1Request, QuizArchiverV7Request
from .settings import GatewaySettings

_DESCRIPTION = (
    "Archive worker API for Moodle's quiz_archiver (API v7) and archivingmod_quiz (API v1) "
    "plugins. Each accepted task becomes an ArchiveJob resource run by the operator. Every "
    'error answer is JSON `{"error": "<message>"}`.'
)


def create_app(
    settings: GatewaySettings,
    kube_api: KubeApi | None = None,
    prober: Prober | None = None,
    metrics: GatewayMetrics | None = None,
) -> FastAPI:
    """Build the app; raises GatewayMisconfigured when no Moodle policy was chosen."""
    settings.ensure_moodle_policy()
    owns_kube = kube_api is None
    kube = kube_api or KubernetesApi.from_environment(settings.jobs_namespace)
    metrics = metrics or GatewayMetrics()
    capacity: Capacity = ListedCapacity(kube)
    cache: LiveJobCache | None = None
    if settings.watch_live_jobs and isinstance(kube, ArchiveJobWatchSource):
        cache = LiveJobCache(kube, list_timeout=settings.kube_timeout_sec)
        capacity = WatchedCapacity(cache, capacity, metrics, settings.watch_settle_sec)
    intake = TaskIntake(settings, kube, metrics, prober, capacity=capacity)
    gateway = Gateway(
        settings=settings, kube=kube, intake=intake, metrics=metrics, capacity=capacity
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watching = asyncio.create_task(cache.run()) if cache is not None else None
        yield
        if watching is not None:
            watching.cancel()
            with suppress(asyncio.CancelledError):
                await watching
        intake.close()
        if owns_kube and isinstance(kube, KubernetesApi):
            kube.close()

    prefix = settings.path_prefix
    app = FastAPI(
        title="Moodle Archive Operator gateway",
        version=app_version(),
        description=_DESCRIPTION,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.include_router(worker_router(gateway), prefix=prefix)
    app.include_router(ops_router(gateway))
    _install_error_handlers(app)
    _install_openapi(app, [QuizArchiverV7Request, ArchivingmodQuizV1Request])
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure answers `{"error": ...}`, never FastAPI's own shapes."""

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    async def validation_error(_: Request, __: Exception) -> JSONResponse:
        return JSONResponse({"error": MSG_INVALID_REQUEST}, status_code=400)

    async def internal_error(_: Request, __: Exception) -> JSONResponse:
        return JSONResponse({"error": "Internal server error."}, status_code=500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)


def _install_openapi(app: FastAPI, body_models: list[type[BaseModel]]) -> None:
    """FastAPI's schema plus the plugins' request bodies, which routes read unvalidated."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # Validation failures answer 400 {"error": ...} here, never FastAPI's 422.
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", {"description": "Invalid request"})
                    responses["400"]["content"] = {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    }
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for model in body_models:
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
