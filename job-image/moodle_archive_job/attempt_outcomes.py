"""Which attempts failed and what was kept with a warning, for the log and the ArchiveJob.

An attempt fails with one line naming it and the cause ("attempt 123: stylesheet <url> timed
out after 30 s"). Failures that are not the attempt's own (Moodle unreachable, a 5xx answer)
keep their message, which names Moodle and the call, and list no attempt as failed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from .moodle_client import MoodleError, MoodleServerError, MoodleUnreachable
from .reasons import one_line

log = logging.getLogger(__name__)

MAX_WARNINGS = 50
# The renderer's label on its messages ("render#3 attempt-123: ..."): the attempt is named anew.
_RENDER_LABEL = re.compile(r"^render#\d+ attempt-\d+: ")


class AttemptFailed(Exception):
    """One attempt could not be archived; the message is one line naming it."""

    def __init__(self, attemptid: int, cause: str) -> None:
        super().__init__(f"attempt {attemptid}: {cause}")
        self.attemptid = attemptid


def as_attempt_failure(attemptid: int, exc: Exception) -> Exception:
    """`exc` as the failure of attempt `attemptid`, or as it is when it is not the attempt's."""
    from .pdf_postprocess import PdfaError
    from .render import RenderError

    if isinstance(exc, AttemptFailed | MoodleUnreachable | MoodleServerError):
        return exc
    if isinstance(exc, RenderError | PdfaError | MoodleError):
        return AttemptFailed(attemptid, _RENDER_LABEL.sub("", str(exc)))
    return exc


@dataclass
class AttemptOutcomes:
    failed: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _dropped: int = 0

    def fail(self, attemptid: int) -> None:
        if attemptid not in self.failed:
            self.failed.append(attemptid)

    def warn(self, text: str) -> None:
        line = one_line(text)
        log.warning(line)
        if line in self.warnings[: MAX_WARNINGS - 1]:
            return
        if len(self.warnings) < MAX_WARNINGS - 1:
            self.warnings.append(line)
            return
        self._dropped += 1
        summary = f"... and {self._dropped} more warnings (see the pod log)"
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(summary)
        else:
            self.warnings[-1] = summary


def moodle_resources(problems: list[str], base_url: str) -> list[str]:
    """The problems ("stylesheet <url> ...") about resources of the Moodle site."""
    root = base_url.rstrip("/") + "/"
    return [p for p in problems if p.partition(" ")[2].startswith(root)]
