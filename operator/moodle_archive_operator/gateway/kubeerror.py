"""The one error type of the gateway's API server access (kept apart: no import cycles)."""

from __future__ import annotations


class KubeError(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"{status or 'no answer'}: {reason}")
        self.status = status
        self.reason = reason

    @property
    def ambiguous(self) -> bool:
        """The request may have been carried out although it failed (timeout, 5xx)."""
        return self.status is None or self.status >= 500
