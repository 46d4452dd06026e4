"""Gateway settings from the environment, and the refusal to start without a Moodle policy."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from moodle_archive_job.setting_names import SettingsNameError
from moodle_archive_operator.gateway import GatewayMisconfigured, GatewaySettings, create_app
from moodle_archive_operator.gateway.__main__ import run_gateway
from tests.gateway.fakekube import FakeKube

_PREFIXES = ("MAO_", "MOODLE_ARCHIVER_", "QUIZ_ARCHIVER_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_PREFIXES) and name != "MOODLE_ARCHIVER_CACHE_DIR":
            monkeypatch.delenv(name)
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


@pytest.mark.parametrize("generation", ["QUIZ_ARCHIVER_", "MOODLE_ARCHIVER_"])
def test_reference_worker_names_keep_their_meaning(
    monkeypatch: pytest.MonkeyPatch, generation: str
) -> None:
    monkeypatch.setenv(f"{generation}PARALLEL_JOBS", "2")
    monkeypatch.setenv(f"{generation}QUEUE_SIZE", "3")
    monkeypatch.setenv(f"{generation}SERVER_PORT", "8181")
    s = GatewaySettings()
    assert (s.max_parallel_jobs, s.queue_size, s.port) == (2, 3, 8181)
    monkeypatch.setenv("MAO_MAX_PARALLEL_JOBS", "2")  # the same value under our name: fine
    assert GatewaySettings().max_parallel_jobs == 2


def test_runner_names_are_not_the_gateways(monkeypatch: pytest.MonkeyPatch) -> None:
    # QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC is the runner's own limit, not the job timeout.
    monkeypatch.setenv("QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC", "1800")
    monkeypatch.setenv("QUIZ_ARCHIVER_LOG_LEVEL", "DEBUG")
    s = GatewaySettings()
    assert (s.job_timeout_sec, s.log_level) == (3600, "INFO")
    monkeypatch.setenv("MAO_JOB_TIMEOUT_SEC", "1800")
    assert GatewaySettings().job_timeout_sec == 1800


def test_two_names_with_different_values_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAO_ALLOW_ANY_MOODLE", "true")
    monkeypatch.setenv("MAO_MAX_PARALLEL_JOBS", "6")
    monkeypatch.setenv("QUIZ_ARCHIVER_PARALLEL_JOBS", "2")
    with pytest.raises(SettingsNameError, match="MAO_MAX_PARALLEL_JOBS and QUIZ_ARCHIVER_PARA"):
        GatewaySettings()
    assert run_gateway(["--log-format", "text"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and "QUIZ_ARCHIVER_PARALLEL_JOBS" in err


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("MOODLE_ARCHIVER_JOB_TIMEOUT_SEC", "MAO_JOB_TIMEOUT_SEC"),
        ("MOODLE_ARCHIVER_GATEWAY_PORT", "MAO_GATEWAY_PORT"),
        ("MOODLE_ARCHIVER_MAX_PARALLEL_JOBS", "MAO_MAX_PARALLEL_JOBS"),
        ("MOODLE_ARCHIVER_ALLOWED_MOODLE_URLS", "MAO_ALLOWED_MOODLE_URLS"),
    ],
)
def test_renamed_variables_are_refused_with_their_new_name(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    monkeypatch.setenv(old, "1")
    with pytest.raises(SettingsNameError, match=f"{old} was renamed to {new}"):
        GatewaySettings()


def test_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MAO_ALLOWED_MOODLE_URLS",
        " https://moodle.example.org , http://127.0.0.1:8081/moodle/,",
    )
    sites = GatewaySettings().allowed_moodle_urls
    assert [str(s) for s in sites] == ["https://moodle.example.org", "http://127.0.0.1:8081/moodle"]
    monkeypatch.setenv("MAO_ALLOWED_MOODLE_URLS", "ftp://x")
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
    assert "MAO_ALLOWED_MOODLE_URLS" in message
    assert "MAO_ALLOW_ANY_MOODLE=true" in message
    create_app(GatewaySettings(allow_any_moodle=True), kube_api=FakeKube())


def test_run_gateway_says_why_it_refuses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_gateway(["--log-format", "text"]) == 2
    err = capsys.readouterr().err
    assert "Refusing to start" in err and "MAO_ALLOW_ANY_MOODLE=true" in err
    monkeypatch.setenv("MAO_ALLOW_ANY_MOODLE", "yes")  # reference: only true/1
    assert run_gateway([]) == 2


def test_run_gateway_reports_invalid_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAO_ALLOWED_MOODLE_URLS", "javascript:alert(1)")
    assert run_gateway([]) == 2
    assert "invalid settings" in capsys.readouterr().err
