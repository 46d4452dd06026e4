"""The readiness probe (readiness.js) seen from Python."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

from .errors import RenderError, first_line

logger = logging.getLogger(__name__)

_PROBE = "window.__moodleArchiveProbe"
_SOURCE = resources.files(__package__).joinpath("readiness.js").read_text("utf-8")


@dataclass(frozen=True)
class ProbeConfig:
    prevent_login_redirect: bool
    # How long to wait for something that may never come (a hanging script, MathJax from an
    # unreachable CDN, the load event) before rendering without it.
    stall_grace_sec: float
    poll_sec: float = 0.05
    unknown_mathjax_sec: float = 3.0
    mathjax_settle_sec: float = 1.0
    geogebra_quiet_sec: float = 2.0
    fonts_grace_sec: float = 2.0

    def script(self) -> str:
        config = {
            "preventLoginRedirect": self.prevent_login_redirect,
            "stallGraceMs": round(self.stall_grace_sec * 1000),
            "pollMs": round(self.poll_sec * 1000),
            "unknownMathJaxMs": round(self.unknown_mathjax_sec * 1000),
            "mathJaxSettleMs": round(self.mathjax_settle_sec * 1000),
            "geogebraQuietMs": round(self.geogebra_quiet_sec * 1000),
            "fontsGraceMs": round(self.fonts_grace_sec * 1000),
        }
        return f"({_SOURCE})({json.dumps(config)});"


@dataclass(frozen=True)
class ProbeReport:
    ready: bool
    markers: tuple[str, ...]
    pending: tuple[str, ...]  # components not settled: page, mathjax, geogebra
    prevented_redirects: tuple[str, ...]

    @classmethod
    def parse(cls, raw: Any) -> ProbeReport:
        if not isinstance(raw, dict):
            raise RenderError(f"the readiness probe answered {raw!r}")
        return cls(
            ready=bool(raw.get("ready")),
            markers=tuple(str(m) for m in raw.get("markers", ())),
            pending=tuple(str(p) for p in raw.get("pending", ())),
            prevented_redirects=tuple(str(u) for u in raw.get("preventedRedirects", ())),
        )


async def wait_until_ready(page: Page, timeout_sec: float) -> ProbeReport:
    """The probe's report once the page is ready, or when timeout_sec has passed (ready=False)."""
    timeout_ms = max(1, round(timeout_sec * 1000))
    evaluation = page.evaluate(f"(timeoutMs) => {_PROBE}.wait(timeoutMs)", timeout_ms)
    try:
        # The probe answers by itself at the timeout; the margin only covers a stuck page.
        raw = await asyncio.wait_for(evaluation, timeout_sec + 10)
    except TimeoutError:
        raise RenderError(
            f"the page stopped answering (readiness probe, {timeout_sec:g} s)"
        ) from None
    except PlaywrightError as exc:
        raise RenderError(f"readiness probe failed: {first_line(exc)}") from None
    report = ProbeReport.parse(raw)
    for marker in report.markers:
        logger.debug("readiness: %s", marker)
    return report


async def probe_snapshot(page: Page) -> ProbeReport | None:
    """What the probe saw so far; None if the page has no probe (it navigated away, crashed)."""
    try:
        raw = await page.evaluate(f"() => {_PROBE} ? {_PROBE}.snapshot() : null")
    except PlaywrightError:
        return None
    return None if raw is None else ProbeReport.parse(raw)
