"""The job pod's termination message: the one line the operator reads when the pod ends.

Kubernetes keeps what the container wrote to its terminationMessagePath (default
/dev/termination-log) in the pod status; with FallbackToLogsOnError it would otherwise take
the last lines of the log, JSON records of a few kilobytes. Outside a pod the file does not
exist and nothing is written. MAO_TERMINATION_LOG names another file (tests).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .reasons import one_line

TERMINATION_LOG = "/dev/termination-log"


def write_termination_message(text: str) -> None:
    target = Path(os.environ.get("MAO_TERMINATION_LOG") or TERMINATION_LOG)
    if not target.is_file():
        return
    with contextlib.suppress(OSError):  # a message lost is no reason to fail differently
        target.write_text(one_line(text) + "\n", encoding="utf-8")
