"""Capped exponential backoff with a per-object jitter: the same schedule after a restart."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential, capped, with a jitter derived from the job (the same after a restart)."""

    base_sec: float = 5.0
    cap_sec: float = 300.0
    factor: float = 2.0
    jitter: float = 0.2
    # One try is made this long before the token expires, however far the backoff has got.
    last_chance_sec: float = 15.0

    def delay(self, attempts: int, key: str) -> float:
        """Seconds between try number `attempts` and the next one."""
        raw = min(self.cap_sec, self.base_sec * self.factor ** max(0, attempts - 1))
        digest = hashlib.sha256(f"{key}/{attempts}".encode()).digest()
        unit = int.from_bytes(digest[:4], "big") / 2**32  # [0, 1)
        return raw * (1 + self.jitter * (2 * unit - 1))
