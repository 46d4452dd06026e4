"""What an admin gets to look at when an attempt's page could not be printed.

Written into one folder per failed attempt: `screenshot.png` (the page as it was; when the page
paints no more frames, its first printed page, with the print as `page.pdf`), `page.html`
(its DOM at that moment), `report.html` (the HTML Moodle sent), `console.txt` (console
messages and page errors), `requests.json` (every request with its status or failure, and
the problems found) and `reason.txt` (the one-line cause). Every text file passes through
the log redaction (registered secrets, `token=`/`wstoken=` values); the screenshot shows
only what the page painted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError

from moodle_archive_job.logs import redact

from .errors import first_line

logger = logging.getLogger(__name__)

_CAPTURE_TIMEOUT_SEC = 10.0
_SCREENSHOT_TIMEOUT_SEC = 3.0
_MAX_SCREENSHOT_PX = 16000  # Chromium's texture limit


async def write_diagnostics(
    folder: Path,
    page: Page | None,
    cdp: CDPSession | None,
    *,
    reason: str,
    report_html: str,
    console: list[str],
    requests: list[dict[str, Any]],
    problems: list[str],
) -> None:
    """Never raises: diagnostics must not hide the failure they describe."""
    try:
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        captured = await _capture(page, cdp)
        files: dict[str, str | bytes] = {
            "reason.txt": redact(reason) + "\n",
            "report.html": redact(report_html),
            "console.txt": "".join(redact(line) + "\n" for line in console),
            "requests.json": redact(
                json.dumps({"problems": problems, "requests": requests}, indent=1)
            ),
        }
        for name, data in captured.items():
            files[name] = redact(data) if isinstance(data, str) else data
        await asyncio.to_thread(_write_all, folder, files)
        logger.info("diagnostics of the failed render kept in %s", folder)
    except Exception as exc:
        logger.warning("could not write diagnostics to %s: %s", folder, first_line(exc))


async def _capture(page: Page | None, cdp: CDPSession | None) -> dict[str, bytes | str]:
    if page is None or page.is_closed():
        return {}
    found: dict[str, bytes | str] = {}
    try:
        async with asyncio.timeout(_CAPTURE_TIMEOUT_SEC):
            found["page.html"] = await page.content()
            # A stylesheet still loading blocks painting: stop it, and show the page without.
            await page.evaluate("() => window.stop()")
    except (PlaywrightError, TimeoutError) as exc:
        logger.debug("no page HTML: %s", first_line(exc))
    if cdp is not None:
        try:
            async with asyncio.timeout(_SCREENSHOT_TIMEOUT_SEC):
                found["screenshot.png"] = await _full_page_png(cdp)
        except (PlaywrightError, TimeoutError, KeyError, ValueError) as exc:
            logger.debug("no screenshot: %s", first_line(exc))
    if "screenshot.png" not in found:
        # A page that produces no frames any more (seen after resources failed) still prints;
        # its first printed page, rendered by Ghostscript, stands in for the screenshot.
        try:
            async with asyncio.timeout(_CAPTURE_TIMEOUT_SEC):
                found["page.pdf"] = await page.pdf(print_background=True)
        except (PlaywrightError, TimeoutError) as exc:
            logger.debug("no PDF of the page: %s", first_line(exc))
    return found


async def _full_page_png(cdp: CDPSession) -> bytes:
    # CDP directly: Playwright's screenshot waits for web fonts, which may be what never came.
    metrics = await cdp.send("Page.getLayoutMetrics")
    size = metrics["cssContentSize"]
    clip = {
        "x": 0,
        "y": 0,
        "width": min(float(size["width"]), _MAX_SCREENSHOT_PX),
        "height": min(float(size["height"]), _MAX_SCREENSHOT_PX),
        "scale": 1,
    }
    shot = await cdp.send(
        "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
    )
    return base64.b64decode(shot["data"])


def _write_all(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, "utf-8")
    if "page.pdf" in files:
        _first_page_png(folder / "page.pdf", folder / "screenshot.png")


def _first_page_png(pdf: Path, png: Path) -> None:
    gs = shutil.which("gs")
    if gs is None:
        return
    try:
        subprocess.run(
            [gs, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=png16m", "-r96",
             "-dFirstPage=1", "-dLastPage=1", f"-sOutputFile={png}", str(pdf)],
            capture_output=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("no screenshot from the page's PDF: %s", exc)
