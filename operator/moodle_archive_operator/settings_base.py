"""Settings shared by the gateway and the operator (same names, same meaning in both)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def env_names(*names: str) -> AliasChoices:
    """Environment names of one setting, first found wins (ours before the reference's)."""
    return AliasChoices(*names)


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MOODLE_ARCHIVER_", extra="ignore", populate_by_name=True
    )

    log_level: str = Field(
        default="INFO",
        validation_alias=env_names(
            "MOODLE_ARCHIVER_LOG_LEVEL", "QUIZ_ARCHIVER_LOG_LEVEL", "log_level"
        ),
    )
    # Namespace of ArchiveJobs, their token Secrets and job pods.
    jobs_namespace: str = Field(default="moodle-archive-jobs", min_length=1, max_length=63)
    max_parallel_jobs: int = Field(
        default=4,
        ge=1,
        validation_alias=env_names(
            "MOODLE_ARCHIVER_MAX_PARALLEL_JOBS", "QUIZ_ARCHIVER_PARALLEL_JOBS", "max_parallel_jobs"
        ),
    )
