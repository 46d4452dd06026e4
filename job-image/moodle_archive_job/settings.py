"""Runner settings, read from the environment with the reference worker's names (spec 7.1).

Every setting has two names: worker 5.0's `MOODLE_ARCHIVER_<X>` and worker 4.x's
`QUIZ_ARCHIVER_<X>`, with the same meaning, so the operations docs of both still hold.
Both given with different values is a start-up error. Settings that only exist here
have both names too.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .setting_names import NameCheck


def _reference_bool(value: object) -> object:
    # The reference worker: true only for "true"/"1" (case-insensitive), anything else false.
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value


RefBool = Annotated[bool, BeforeValidator(_reference_bool)]


_CGROUP_ROOT = Path("/sys/fs/cgroup")
# Debian's package chromium-headless-shell: Chromium's headless-only build (the "old headless"
# shell, also what Playwright starts for headless by default). Without it and without
# QUIZ_ARCHIVER_CHROMIUM_PATH set, the runner falls back to the full browser (render/executable.py).
DEFAULT_CHROMIUM_PATH = "/usr/bin/chromium-headless-shell"


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> int | None:
    """Whole CPUs of this cgroup's CPU quota (a pod's CPU limit), rounded up; None if unlimited.

    cgroup v2 keeps the quota in `cpu.max` ("<quota> <period>" or "max <period>"); v1 in
    `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us` under the cpu controller's mount.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    for controller in ("cpu", "cpu,cpuacct"):
        try:
            quota_us = int((root / controller / "cpu.cfs_quota_us").read_text())
            period_us = int((root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us <= 0 or period_us <= 0:
            return None
        return max(1, math.ceil(quota_us / period_us))
    return None


def visible_cpus(cgroup_root: Path | None = None) -> int:
    """CPUs this process may use: its CPU affinity, capped by its cgroup's CPU quota (in a
    pod: the CPU limit). The default concurrency and the render and Ghostscript slots are
    sized from it."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(cgroup_root or _CGROUP_ROOT)
    return min(cpus, limit) if limit else cpus


PREFIX = "MOODLE_ARCHIVER_"  # worker 5.0
PREFIX_4X = "QUIZ_ARCHIVER_"  # worker 4.x


def runner_env_names(field_name: str, _info: FieldInfo | None = None) -> tuple[str, str]:
    """The environment names of one runner setting: worker 5.0's first, then 4.x's."""
    return PREFIX + field_name.upper(), PREFIX_4X + field_name.upper()


class RunnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            NameCheck(settings_cls, runner_env_names),
            env_settings,
            EnvSettingsSource(settings_cls, env_prefix=PREFIX_4X),
        )

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
    # A page Ghostscript cannot make PDF/A of: "strict" fails its attempt (and the job), as the
    # reference worker does when Ghostscript fails; "lenient" keeps the plain PDF and records a
    # warning (log and ArchiveJob status.warnings).
    pdfa_mode: Literal["strict", "lenient"] = "strict"

    # Settings of this project (no reference equivalent).
    # Attempts in flight at once in one job (fetch, render, post-process overlap).
    attempt_concurrency: int = Field(default=max(2, 2 * visible_cpus()), ge=1, le=64)
    chromium_path: str = DEFAULT_CHROMIUM_PATH
    # Retries of transient Moodle errors (transport errors, 5xx) and their first backoff.
    moodle_retries: int = Field(default=4, ge=0)
    moodle_retry_backoff_sec: float = Field(default=0.5, ge=0)
    # How long to retry E_JOB_NOT_FOUND at start (Moodle inserts the job row after our reply).
    job_not_found_grace_sec: float = Field(default=30, ge=0)
    # Connect and read timeouts of ordinary ws calls, and of downloads/uploads.
    moodle_connect_timeout_sec: float = Field(default=10, gt=0)
    moodle_read_timeout_sec: float = Field(default=60, gt=0)
    moodle_transfer_timeout_sec: float = Field(default=1800, gt=0)
    # A report page whose stylesheet, font or script failed to load (or timed out) is rendered
    # again, up to render_attempts times in all, after render_retry_backoff_sec (doubling);
    # then its attempt fails with the cause. allow_incomplete_pages prints it anyway instead
    # (each missing resource is logged and recorded as a warning).
    render_attempts: int = Field(default=3, ge=1, le=10)
    render_retry_backoff_sec: float = Field(default=2.0, ge=0)
    allow_incomplete_pages: RefBool = False
    # Screenshot, console, failed requests and HTML of each failed attempt, kept in
    # <work_dir>/job-<jobid>/diagnostics/attempt-<id>/ (token redacted).
    keep_diagnostics: RefBool = True
    # Holds each job's persistent directory job-<jobid>/ (checkpoints, the ZIP being built):
    # the pod's /work (emptyDir, or a work volume that lets a replacement pod resume);
    # default: the system temp directory.
    work_dir: str | None = None
    # Memory for static page resources kept for the whole job (render/cache_policy.py); 0: off.
    asset_cache_mib: int = Field(default=64, ge=0, le=4096)
    # Moodle's upload limit for plugins that do not send it (quiz_archiver 4.1.0 and older):
    # an archive above it fails as early as that is known, not at the upload. A limit the
    # plugin sends wins.
    moodle_max_upload_bytes: int | None = Field(default=None, gt=0)
    # Worker 5.0's archive options, for tasks whose request does not set them: every file at
    # the top level (`archive_flatten`), and the `.sha256` file next to every file.
    archive_flatten: RefBool = False
    archive_filehashes: RefBool = True

    def ghostscript_binary(self) -> str | None:
        return self.pdfa_conversion_ghostscript_binary_path or shutil.which("gs")
