"""Gateway settings from the environment, and the refusal to start without a Moodle policy."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from moodle_archive_operator.gateway import GatewayMisconfigured, GatewaySettings, create_app
from moodle_archive_operator.gateway.__main__ import run_gateway
from tests.gateway.fakekube import FakeKube

_ENV_NAMES = (
    "MOODLE_ARCHIVER_ALLOWED_MOODLE_URLS",
    "MOODLE_ARCHIVER_ALLOW_ANY_MOODLE",
    "MOODLE_ARCHIVER_ALLOW_PRIVATE_MOODLE_HOSTS",
    "MOODLE_ARCHIVER_PATH_PREFIX",
    "MOODLE_ARCHIVER_MAX_PARALLEL_JOBS",
    "MOODLE_ARCHIVER_QUEUE_SIZE",
    "QUIZ_ARCHIVER_PARALLEL_JOBS",
    "QUIZ_ARCHIVER_QUEUE_SIZE",
    "QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers  # run_gateway configures logging for the process
    root.setLevel(level)


def test_defaults() -> None:
    settings = GatewaySettings()
    assert (settings.max_parallel_jobs, settings.queue_size, settings.capacity) == (4, 8, 12)
    assert settings.port == 8080 and settings.path_prefix == ""
    assert settings.probe_timeout_sec < settings.request_budget_sec < 20
    assert settings.allowed_moodle_urls == () and settings.allow_any_moodle is False


def test_reference_worker_names_keep_their_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIZ_ARCHIVER_PARALLEL_JOBS", "2")
    monkeypatch.setenv("QUIZ_ARCHIVER_QUEUE_SIZE", "3")
    monkeypatch.setenv("QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC", "1800")
    s = GatewaySettings()
    assert (s.max_parallel_jobs, s.queue_size, s.job_timeout_sec) == (2, 3, 1800)
    monkeypatch.setenv("MOODLE_ARCHIVER_MAX_PARALLEL_JOBS", "6")
    assert GatewaySettings().max_parallel_jobs == 6


def test_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MOODLE_ARCHIVER_ALLOWED_MOODLE_URLS",
        " https://moodle.example.org , http://127.0.0.1:8081/moodle/,",
    )
    sites = GatewaySettings().allowed_moodle_urls
    assert [str(s) for s in sites] == ["https://moodle.example.org", "http://127.0.0.1:8081/moodle"]
    monkeypatch.setenv("MOODLE_ARCHIVER_ALLOWED_MOODLE_URLS", "ftp://x")
    with pytest.raises(ValidationError):
        GatewaySettings()


@pytest.mark.parametrize(
    ("raw", "prefix"),
    [("", ""), ("/", ""), ("s3cr3t", "/s3cr3t"), ("/a/b-c_d~e.f/", "/a/b-c_d~e.f")],
)
def test_path_prefix_is_normalised(raw: str, prefix: str) -> None:
    assert GatewaySettings(path_prefix=raw).path_prefix == prefix


@pytest.mark.parametrize("raw", ["a b", "a/../b", "a?b", "a%2fb", "/./"])
def test_bad_path_prefixes_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(path_prefix=raw)


def test_no_allow_list_refuses_to_start() -> None:
    with pytest.raises(GatewayMisconfigured) as info:
        create_app(GatewaySettings(), kube_api=FakeKube())
    message = str(info.value)
    assert "MOODLE_ARCHIVER_ALLOWED_MOODLE_URLS" in message
    assert "MOODLE_ARCHIVER_ALLOW_ANY_MOODLE=true" in message
    create_app(GatewaySettings(allow_any_moodle=True), kube_api=FakeKube())


def test_run_gateway_says_why_it_refuses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_gateway(["--log-format", "text"]) == 2
    err = capsys.readouterr().err
    assert "Refusing to start" in err and "MOODLE_ARCHIVER_ALLOW_ANY_MOODLE=true" in err
    monkeypatch.setenv("MOODLE_ARCHIVER_ALLOW_ANY_MOODLE", "yes")  # reference: only true/1
    assert run_gateway([]) == 2


def test_run_gateway_reports_invalid_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOODLE_ARCHIVER_ALLOWED_MOODLE_URLS", "javascript:alert(1)")
    assert run_gateway([]) == 2
    assert "invalid settings" in capsys.readouterr().err
