"""Setting names of both worker generations (runner) and the control plane's own prefix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moodle_archive_job import cli
from moodle_archive_job.archivejob_status import StatusSinkSettings
from moodle_archive_job.setting_names import SettingsNameError
from moodle_archive_job.settings import RunnerSettings
from moodle_archive_operator.controller.settings import RESERVED_JOB_ENV, OperatorSettings

_PREFIXES = ("MAO_", "MOODLE_ARCHIVER_", "QUIZ_ARCHIVER_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_PREFIXES) and name != "MOODLE_ARCHIVER_CACHE_DIR":
            monkeypatch.delenv(name)


@pytest.mark.parametrize("prefix", ["MOODLE_ARCHIVER_", "QUIZ_ARCHIVER_"])
def test_runner_reads_both_generations(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv(f"{prefix}ZIP_COMPRESSION_ALGO", "STORED")
    monkeypatch.setenv(f"{prefix}PDFA_CONVERSION", "false")
    monkeypatch.setenv(f"{prefix}MOODLE_RETRIES", "7")  # one of our own settings
    s = RunnerSettings()
    assert (s.zip_compression_algo, s.pdfa_conversion, s.moodle_retries) == ("STORED", False, 7)


def test_runner_names_may_agree_but_not_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC", "900")
    monkeypatch.setenv("MOODLE_ARCHIVER_REQUEST_TIMEOUT_SEC", "900")
    assert RunnerSettings().request_timeout_sec == 900
    monkeypatch.setenv("MOODLE_ARCHIVER_REQUEST_TIMEOUT_SEC", "1200")
    with pytest.raises(SettingsNameError) as info:
        RunnerSettings()
    message = str(info.value)
    assert "MOODLE_ARCHIVER_REQUEST_TIMEOUT_SEC and QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC" in message
    assert "1200" not in message and "900" not in message  # values may be secrets


def test_runner_cli_refuses_disagreeing_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("QUIZ_ARCHIVER_DEMO_MODE", "true")
    monkeypatch.setenv("MOODLE_ARCHIVER_DEMO_MODE", "false")
    code = cli.main(["run-job", "--request", str(tmp_path / "none.json"),
                     "--job-id", "3f1e2d4c-0000-4000-8000-000000000001"])  # fmt: skip
    assert code == cli.EXIT_INVALID_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "MOODLE_ARCHIVER_DEMO_MODE and QUIZ_ARCHIVER_DEMO_MODE" in err


def test_pod_wiring_has_the_control_plane_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAO_ARCHIVEJOB_NAME", "aj-1")
    monkeypatch.setenv("MAO_STATUS_INTERVAL_SEC", "7")
    monkeypatch.setenv("MOODLE_ARCHIVER_ARCHIVEJOB_NAMESPACE", "elsewhere")  # not ours any more
    s = StatusSinkSettings()
    assert (s.archivejob_name, s.status_interval_sec, s.archivejob_namespace) == ("aj-1", 7, None)


def test_operator_reads_mao_names_and_refuses_old_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAO_JOB_IMAGE", "registry.example/job:1")
    monkeypatch.setenv("QUIZ_ARCHIVER_PARALLEL_JOBS", "3")
    s = OperatorSettings()
    assert (s.job_image, s.max_parallel_jobs) == ("registry.example/job:1", 3)
    monkeypatch.setenv("MOODLE_ARCHIVER_JOB_IMAGE", "registry.example/job:0")
    with pytest.raises(SettingsNameError, match="MOODLE_ARCHIVER_JOB_IMAGE was renamed to MAO_"):
        OperatorSettings()


@pytest.mark.parametrize("name", ["QUIZ_ARCHIVER_WORK_DIR", "MOODLE_ARCHIVER_WORK_DIR",
                                  "MOODLE_ARCHIVER_REQUEST_TIMEOUT_SEC"])  # fmt: skip
def test_job_env_cannot_override_what_the_operator_sets_under_either_name(name: str) -> None:
    assert name in RESERVED_JOB_ENV
    with pytest.raises(ValueError, match="set by the operator"):
        OperatorSettings(job_env={name: "/elsewhere"})
