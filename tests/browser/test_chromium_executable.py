"""Which Chromium executable the runner starts (render/executable.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from moodle_archive_job.render import Renderer, RenderError
from moodle_archive_job.render.executable import FULL_CHROMIUM_PATH, chromium_executable
from moodle_archive_job.settings import DEFAULT_CHROMIUM_PATH, RunnerSettings
from tests.browser.conftest import BrowserHarness, browser_settings

HEADLESS_SHELL = "/usr/bin/chromium-headless-shell"


def only(*present: str) -> Callable[[str], bool]:
    return lambda path: path in present


@pytest.fixture
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """QUIZ_ARCHIVER_CHROMIUM_PATH of the environment (the suite's choice) is not given."""


@pytest.mark.usefixtures("unset")
def test_default_is_debians_headless_shell() -> None:
    assert DEFAULT_CHROMIUM_PATH == HEADLESS_SHELL
    assert RunnerSettings().chromium_path == HEADLESS_SHELL
    both = only(HEADLESS_SHELL, FULL_CHROMIUM_PATH)
    assert chromium_executable(RunnerSettings(), both) == HEADLESS_SHELL


@pytest.mark.usefixtures("unset")
def test_image_with_only_full_chromium_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert chromium_executable(RunnerSettings(), only(FULL_CHROMIUM_PATH)) == FULL_CHROMIUM_PATH
    assert f"{HEADLESS_SHELL} not found, starting {FULL_CHROMIUM_PATH} instead" in caplog.text


@pytest.mark.parametrize(
    "env_name", ["QUIZ_ARCHIVER_CHROMIUM_PATH", "MOODLE_ARCHIVER_CHROMIUM_PATH"]
)
def test_a_given_path_is_used_and_never_replaced(
    env_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_name, "/opt/chrome/chrome")
    assert chromium_executable(RunnerSettings(), only("/opt/chrome/chrome")) == "/opt/chrome/chrome"
    # Given but absent: an error naming it and the setting, even where another Chromium is.
    with pytest.raises(RenderError) as error:
        chromium_executable(RunnerSettings(), only(HEADLESS_SHELL, FULL_CHROMIUM_PATH))
    assert str(error.value) == (
        "Chromium not found at /opt/chrome/chrome: install Debian's chromium-headless-shell "
        "or set MOODLE_ARCHIVER_CHROMIUM_PATH / QUIZ_ARCHIVER_CHROMIUM_PATH to the Chromium "
        "executable"
    )


def test_the_default_given_explicitly_is_not_replaced() -> None:
    expected = re.escape(f"Chromium not found at {HEADLESS_SHELL}: ")
    with pytest.raises(RenderError, match=f"^{expected}"):
        chromium_executable(RunnerSettings(chromium_path=HEADLESS_SHELL), only(FULL_CHROMIUM_PATH))


@pytest.mark.usefixtures("unset")
def test_no_chromium_at_all_names_both_paths() -> None:
    with pytest.raises(RenderError) as error:
        chromium_executable(RunnerSettings(), only())
    assert str(error.value).startswith(
        f"Chromium not found at {HEADLESS_SHELL} nor at {FULL_CHROMIUM_PATH}: "
    )


def test_a_file_that_is_not_executable_does_not_count(tmp_path: Path) -> None:
    script = tmp_path / "chromium"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(RenderError, match=r"^Chromium not found at "):
        chromium_executable(RunnerSettings(chromium_path=str(script)))
    script.chmod(0o755)
    assert chromium_executable(RunnerSettings(chromium_path=str(script))) == str(script)


@pytest.mark.browser
def test_renderer_starts_the_configured_executable(
    browser_harness: BrowserHarness, caplog: pytest.LogCaptureFixture
) -> None:
    settings = browser_settings()

    async def started(renderer: Renderer) -> str:
        return "ok"

    with caplog.at_level(logging.INFO, logger="moodle_archive_job.render.renderer"):
        assert browser_harness.with_renderer(settings, started) == "ok"
    assert f"started ({settings.chromium_path})" in caplog.text


@pytest.mark.browser
def test_renderer_refuses_to_start_without_chromium(
    browser_harness: BrowserHarness, tmp_path: Path
) -> None:
    missing = tmp_path / "chromium"
    settings = browser_settings(chromium_path=str(missing))

    async def unused(renderer: Renderer) -> None:
        raise AssertionError("the renderer started")

    with pytest.raises(RenderError, match=f"^{re.escape(f'Chromium not found at {missing}: ')}"):
        browser_harness.with_renderer(settings, unused)
