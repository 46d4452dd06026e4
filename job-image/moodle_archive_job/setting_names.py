"""Environment names of settings when one setting has several names.

The runner reads worker 5.0's `MOODLE_ARCHIVER_<X>` and worker 4.x's `QUIZ_ARCHIVER_<X>`
for the same setting; the control plane reads `MAO_<X>` plus a few reference-worker
names. `NameCheck` is a settings source that reads nothing: it fails the start when two
names of one setting disagree, or when a renamed variable is still set (a silently
ignored setting is worse than a refusal to start).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class SettingsNameError(ValueError):
    """Two environment names of one setting disagree, or a renamed name is still in use."""


NamesOf = Callable[[str, FieldInfo], Sequence[str]]


def _environment() -> dict[str, tuple[str, str]]:
    # pydantic-settings matches names case-insensitively: do the same.
    return {name.lower(): (name, value) for name, value in os.environ.items()}


def check_names(
    fields: Mapping[str, FieldInfo],
    names_of: NamesOf,
    renamed: Mapping[str, str] | None = None,
    environ: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """Raise SettingsNameError naming the variables at fault (never their values: one of
    them may be a secret)."""
    env = _environment() if environ is None else environ
    problems: list[str] = []
    for field_name, info in fields.items():
        given = [env[n.lower()] for n in names_of(field_name, info) if n.lower() in env]
        if len({value.strip() for _, value in given}) > 1:
            problems.append(
                " and ".join(name for name, _ in given)
                + " are the same setting with different values: set one of them"
            )
    for old, new in (renamed or {}).items():
        if old.lower() in env:
            problems.append(f"{env[old.lower()][0]} was renamed to {new}")
    if problems:
        raise SettingsNameError("; ".join(problems))


class NameCheck(PydanticBaseSettingsSource):
    """A settings source that only checks the environment names (see module docstring)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        names_of: NamesOf,
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self._names_of = names_of
        self._renamed = renamed

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        check_names(self.settings_cls.model_fields, self._names_of, self._renamed)
        return {}
