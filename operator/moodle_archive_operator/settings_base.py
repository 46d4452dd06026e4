"""Settings shared by the gateway and the operator (same names, same meaning in both).

The control plane's own variables are `MAO_<X>`, apart from the runner's
`MOODLE_ARCHIVER_*` / `QUIZ_ARCHIVER_*` so that no name means two things. A few
settings also take the reference worker's name (4.x and 5.0) where no runner setting
has that name. Our earlier `MOODLE_ARCHIVER_<X>` names are refused at start-up with
the new name, rather than ignored.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from moodle_archive_job.setting_names import NameCheck

PREFIX = "MAO_"
# The prefix these settings had before the runner took worker 5.0's names.
OLD_PREFIX = "MOODLE_ARCHIVER_"


def env_names(*names: str) -> AliasChoices:
    """Environment names of one setting, first found wins (ours before the reference's)."""
    return AliasChoices(*names)


def control_plane_env_names(field_name: str, info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str) and c.isupper()]
    return [PREFIX + field_name.upper()]


def _renamed(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Old name -> new name, for every setting whose old name is not still one of its names."""
    current = {
        name
        for field_name, info in settings_cls.model_fields.items()
        for name in control_plane_env_names(field_name, info)
    }
    renamed: dict[str, str] = {}
    for field_name, info in settings_cls.model_fields.items():
        new = control_plane_env_names(field_name, info)[0]
        old = OLD_PREFIX + new.removeprefix(PREFIX)
        if old not in current:
            renamed[old] = new
    return renamed


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        check = NameCheck(settings_cls, control_plane_env_names, _renamed(settings_cls))
        return init_settings, check, env_settings

    log_level: str = "INFO"
    # Namespace of ArchiveJobs, their token Secrets and job pods.
    jobs_namespace: str = Field(default="moodle-archive-jobs", min_length=1, max_length=63)
    max_parallel_jobs: int = Field(
        default=4,
        ge=1,
        validation_alias=env_names(
            "MAO_MAX_PARALLEL_JOBS",
            "MOODLE_ARCHIVER_PARALLEL_JOBS",
            "QUIZ_ARCHIVER_PARALLEL_JOBS",
            "max_parallel_jobs",
        ),
    )
