"""Fixtures for the gateway's HTTP tests against an in-memory API server and a fake probe."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from moodle_archive_job.task import ArchiveTask
from moodle_archive_operator.gateway import GatewaySettings, create_app
from tests.gateway.fakekube import FakeKube

ALLOWED = "https://moodle.example"


class FakeProbe:
    """Stands in for `probe_connection`: records calls, succeeds or raises `outcome`."""

    def __init__(self) -> None:
        self.calls: list[tuple[ArchiveTask, str, float]] = []
        self.outcome: BaseException | None = None
        self.delay = 0.0

    def __call__(self, task: ArchiveTask, token: str, timeout_sec: float) -> None:
        self.calls.append((task, token, timeout_sec))
        if self.delay:
            time.sleep(self.delay)
        if self.outcome is not None:
            raise self.outcome


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe()


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"allowed_moodle_urls": ALLOWED, "jobs_namespace": "jobs"}
    values.update(overrides)
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def make_client(kube: FakeKube, probe: FakeProbe) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        app = create_app(settings(**overrides), kube_api=kube, prober=probe)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


class _RawFormatter(logging.Formatter):
    """Everything a record carries, unredacted: leak checks must not rely on redaction."""

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        fields = getattr(record, "fields", None)
        return json.dumps(
            {"message": record.getMessage(), "fields": fields, "exception": exc}, default=str
        )


@pytest.fixture
def raw_logs() -> Iterator[io.StringIO]:
    """Every log line of the test, as emitted (before any redaction)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_RawFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
