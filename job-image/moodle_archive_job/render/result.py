from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# "ready": the probe reported ready; "timeout": it did not, but the settings say render anyway;
# "skipped": QUIZ_ARCHIVER_WAIT_FOR_READY_SIGNAL is off.
ReadyState = Literal["ready", "timeout", "skipped"]


@dataclass(frozen=True)
class RenderResult:
    pdf_path: Path
    ready_state: ReadyState
    # Progress markers of the readiness probe, e.g. "mathjax-3-typeset", in the order they happened.
    readiness_markers: tuple[str, ...] = ()
    # Login page requests that were aborted, and login redirects cancelled in the page
    # (URLs without query string).
    blocked_login_requests: tuple[str, ...] = ()
    # Moodle scripts whose "redirect to /login/index.php" snippet was patched out.
    patched_scripts: tuple[str, ...] = ()
    page_errors: int = 0
    failed_requests: int = 0
    # Stylesheets, fonts and scripts printed without (QUIZ_ARCHIVER_ALLOW_INCOMPLETE_PAGES):
    # "stylesheet <url> timed out after 30 s".
    missing_resources: tuple[str, ...] = ()
    # Seconds: setup (context, routes, page), navigate, ready, print.
    timings: dict[str, float] = field(default_factory=dict)
