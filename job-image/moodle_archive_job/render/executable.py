"""Which Chromium executable a job starts (QUIZ_ARCHIVER_CHROMIUM_PATH).

The default is Debian's headless shell. An image that has only Debian's full `chromium` (a
custom image made before the headless shell became the default) keeps working: when the
setting is not given and the headless shell is absent, the full browser is started instead,
with a warning. A path that is given but absent is a start-up error naming it and the setting.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from moodle_archive_job.settings import DEFAULT_CHROMIUM_PATH, RunnerSettings, runner_env_names

from .errors import RenderError

logger = logging.getLogger(__name__)

FULL_CHROMIUM_PATH = "/usr/bin/chromium"  # Debian's package chromium, the previous default


def is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def chromium_executable(
    settings: RunnerSettings, usable: Callable[[str], bool] = is_executable
) -> str:
    """The executable to start; RenderError when there is none at the configured path."""
    path = settings.chromium_path
    if usable(path):
        return path
    given = "chromium_path" in settings.model_fields_set
    if not given and path == DEFAULT_CHROMIUM_PATH and usable(FULL_CHROMIUM_PATH):
        logger.warning(
            "%s not found, starting %s instead (install Debian's chromium-headless-shell: "
            "it prints the same PDFs with less CPU and memory)",
            path,
            FULL_CHROMIUM_PATH,
        )
        return FULL_CHROMIUM_PATH
    names = " / ".join(runner_env_names("chromium_path"))
    fallback = "" if given else f" nor at {FULL_CHROMIUM_PATH}"
    raise RenderError(
        f"Chromium not found at {path}{fallback}: install Debian's chromium-headless-shell "
        f"or set {names} to the Chromium executable"
    )
