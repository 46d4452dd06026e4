"""How the one Chromium of a job is started."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from moodle_archive_job.settings import RunnerSettings

# No traffic of Chromium's own (updates, sync, metrics, field trials); CORS off like the
# reference worker, so the report on its fake URL may load Moodle's resources from anywhere.
# The headless shell (the default executable) has no updater, sync, metrics or first-run UI:
# none of the switches from --disable-background-networking to --no-default-browser-check is
# in its 156 binary (`strings`), and --disable-client-side-phishing-detection is in neither of
# Debian's 156 binaries. They stay for the full browser (the fallback, or a
# QUIZ_ARCHIVER_CHROMIUM_PATH of the admin's choice, perhaps an older one).
_BASE_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is 64 MB in a default pod
    "--disable-web-security",
)


def launch_args(extra: tuple[str, ...] = ()) -> list[str]:
    args = list(_BASE_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    args.extend(extra)
    return args


def proxy_settings(settings: RunnerSettings) -> dict[str, Any] | None:
    """Playwright's proxy dict from QUIZ_ARCHIVER_PROXY_SERVER_URL, credentials split out."""
    url = (settings.proxy_server_url or "").strip()
    if not url or url.lower() == "false":
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    proxy: dict[str, Any] = {"server": urlunsplit((parts.scheme, host, "", "", ""))}
    if parts.username:
        proxy["username"] = unquote(parts.username)
        proxy["password"] = unquote(parts.password or "")
    bypass = (settings.proxy_bypass_domains or "").strip()
    if bypass:
        proxy["bypass"] = ",".join(d.strip() for d in bypass.split(",") if d.strip())
    return proxy


def without_credentials(
    proxy: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """The proxy for Playwright, and its credentials for the runner's own interception.

    Given credentials, Playwright would answer the proxy's challenge by intercepting every
    request itself, and turn Chromium's cache off for that (interceptor.py answers it).
    """
    if proxy is None or "username" not in proxy:
        return proxy, None
    rest = {k: v for k, v in proxy.items() if k not in ("username", "password")}
    return rest, (proxy["username"], proxy.get("password", ""))
