"""Runner settings, read from the environment with the reference worker's names (spec 7.1).

Names and meanings of `QUIZ_ARCHIVER_*` variables are kept so existing operations
docs still hold. Settings that only exist here use the same prefix.
"""

from __future__ import annotations

import os
import shutil
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _reference_bool(value: object) -> object:
    # The reference worker: true only for "true"/"1" (case-insensitive), anything else false.
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value


RefBool = Annotated[bool, BeforeValidator(_reference_bool)]


def visible_cpus() -> int:
    """CPUs this process may run on: the default concurrency is sized from it."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUIZ_ARCHIVER_", extra="ignore")

    log_level: str = "INFO"
    demo_mode: RefBool = False
    zip_compression_algo: Literal["STORED", "DEFLATED", "BZIP2", "LZMA"] = "DEFLATED"
    status_reporting_interval_sec: float = Field(default=15, ge=0)
    request_timeout_sec: float = Field(default=3600, gt=0)
    backup_status_retry_sec: float = Field(default=30, gt=0)
    download_max_filesize_bytes: int = Field(default=10_240_000_000, gt=0)
    backup_download_max_filesize_bytes: int = Field(default=5_120_000_000, gt=0)
    question_attachment_download_max_filesize_bytes: int = Field(default=1_280_000_000, gt=0)
    report_base_viewport_width: int = Field(default=1240, ge=320)
    report_page_margin: str = "5mm"
    wait_for_ready_signal: RefBool = True
    wait_for_ready_signal_timeout_sec: float = Field(default=30, gt=0)
    continue_after_ready_signal_timeout: RefBool = False
    wait_for_navigation_timeout_sec: float = Field(default=30, gt=0)
    prevent_redirect_to_login: RefBool = True
    skip_https_cert_validation: RefBool = False
    proxy_server_url: str | None = None
    proxy_bypass_domains: str | None = None
    pdfa_conversion: RefBool = True
    pdfa_conversion_timeout_sec: float = Field(default=30, gt=0)
    pdfa_conversion_ghostscript_binary_path: str | None = None

    # Settings of this project (no reference equivalent).
    # Attempts in flight at once in one job (fetch, render, post-process overlap).
    attempt_concurrency: int = Field(default=max(2, 2 * visible_cpus()), ge=1, le=64)
    chromium_path: str = "/usr/bin/chromium"
    # Retries of transient Moodle errors (transport errors, 5xx) and their first backoff.
    moodle_retries: int = Field(default=4, ge=0)
    moodle_retry_backoff_sec: float = Field(default=0.5, ge=0)
    # How long to retry E_JOB_NOT_FOUND at start (Moodle inserts the job row after our reply).
    job_not_found_grace_sec: float = Field(default=30, ge=0)
    # Connect and read timeouts of ordinary ws calls, and of downloads/uploads.
    moodle_connect_timeout_sec: float = Field(default=10, gt=0)
    moodle_read_timeout_sec: float = Field(default=60, gt=0)
    moodle_transfer_timeout_sec: float = Field(default=1800, gt=0)
    # Scratch directory for one job (an emptyDir in the pod); default: a fresh temp dir.
    work_dir: str | None = None

    def ghostscript_binary(self) -> str | None:
        return self.pdfa_conversion_ghostscript_binary_path or shutil.which("gs")
