"""Gateway settings, read from the environment (`MAO_*`).

The reference workers' names for the listening address, port and queue size
(`QUIZ_ARCHIVER_*` of 4.x, `MOODLE_ARCHIVER_*` of 5.0) keep their meaning here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from moodle_archive_job.settings import RefBool

from ..settings_base import ControlPlaneSettings, env_names
from .moodle_policy import AllowedSite

_PREFIX_RE = re.compile(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$")

ALLOW_LIST_ENV = "MAO_ALLOWED_MOODLE_URLS"
ALLOW_ANY_ENV = "MAO_ALLOW_ANY_MOODLE"


class GatewayMisconfigured(Exception):
    """The gateway must not start with these settings; the message tells the admin why."""


class GatewaySettings(ControlPlaneSettings):
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a server in a pod listens on all interfaces
        validation_alias=env_names(
            "MAO_GATEWAY_HOST",
            "MOODLE_ARCHIVER_SERVER_HOST",
            "QUIZ_ARCHIVER_SERVER_HOST",
            "host",
        ),
    )
    port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        validation_alias=env_names(
            "MAO_GATEWAY_PORT",
            "MOODLE_ARCHIVER_SERVER_PORT",
            "QUIZ_ARCHIVER_SERVER_PORT",
            "port",
        ),
    )
    # Capacity: non-final ArchiveJobs >= max_parallel_jobs + queue_size -> 429.
    queue_size: int = Field(
        default=8,
        ge=0,
        validation_alias=env_names(
            "MAO_QUEUE_SIZE", "MOODLE_ARCHIVER_QUEUE_SIZE", "QUIZ_ARCHIVER_QUEUE_SIZE", "queue_size"
        ),
    )
    # Hard run-time limit written into each ArchiveJob (spec.timeoutSeconds). Not the
    # reference's REQUEST_TIMEOUT_SEC: that name is the runner's own limit, which the
    # operator derives from this one.
    job_timeout_sec: int = Field(default=3600, ge=1)
    # Moodle sites this gateway serves: comma-separated base URLs or origins.
    allowed_moodle_urls: Annotated[tuple[AllowedSite, ...], NoDecode] = ()
    # Without an allow-list the gateway refuses to start unless this is true.
    allow_any_moodle: RefBool = False
    # Only with allow_any_moodle: also accept loopback, private and link-local hosts.
    allow_private_moodle_hosts: RefBool = False
    # Secret path prefix: the worker API is then served under /<prefix>/ only.
    path_prefix: str = ""
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # The plugin gives up after 20 s: probe and persistence stay well inside that.
    probe_timeout_sec: float = Field(default=8.0, gt=0, le=15)
    kube_timeout_sec: float = Field(default=5.0, gt=0)
    request_budget_sec: float = Field(default=15.0, gt=0, le=19)
    # Count live ArchiveJobs from a watched copy in this replica instead of two lists per
    # task; the re-check waits this long for our own job's watch event, else it lists.
    watch_live_jobs: RefBool = True
    watch_settle_sec: float = Field(default=1.0, gt=0, le=5)
    # An `Accepted` Event per task from the gateway (one more API write per task); the
    # operator's own first Event (Queued or the admission) follows either way.
    accepted_events: RefBool = False

    @field_validator("allowed_moodle_urls", mode="before")
    @classmethod
    def _split_sites(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if isinstance(value, list | tuple):
            return tuple(v if isinstance(v, AllowedSite) else AllowedSite.parse(v) for v in value)
        return value

    @field_validator("path_prefix", mode="before")
    @classmethod
    def _normalise_prefix(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip().strip("/")
        if not value:
            return ""
        if not _PREFIX_RE.match(value) or any(seg in (".", "..") for seg in value.split("/")):
            raise ValueError("path prefix: only letters, digits and . _ ~ - / are allowed")
        return "/" + value

    @property
    def capacity(self) -> int:
        return self.max_parallel_jobs + self.queue_size

    def ensure_moodle_policy(self) -> None:
        """Refuse to run an open gateway unless the admin asked for one explicitly."""
        if not self.allowed_moodle_urls and not self.allow_any_moodle:
            raise GatewayMisconfigured(
                "Refusing to start: no Moodle allow-list is configured, so this gateway would "
                "accept archive tasks for any Moodle site and make requests to any host. "
                f"Set {ALLOW_LIST_ENV} to the Moodle base URLs this worker serves "
                "(comma-separated, e.g. https://moodle.example.org), or set "
                f"{ALLOW_ANY_ENV}=true to accept tasks from any Moodle site deliberately."
            )
