"""QUIZ_ARCHIVER_PROXY_SERVER_URL for `requests` (the Moodle client and the asset fetcher)."""

from __future__ import annotations

from urllib.parse import urlsplit

from moodle_archive_job.settings import RunnerSettings


def requests_proxies(settings: RunnerSettings, for_url: str | None = None) -> dict[str, str] | None:
    """None: requests' own environment detection applies; {}: no proxy at all (also when
    `for_url`, the one site a client talks to, is in QUIZ_ARCHIVER_PROXY_BYPASS_DOMAINS)."""
    url = settings.proxy_server_url
    if url is None:
        return None
    if url.strip().lower() == "false":
        return {}
    if for_url is not None and bypasses_proxy(for_url, settings.proxy_bypass_domains):
        return {}
    return {"http": url, "https": url}


def bypasses_proxy(url: str, rules: str | None) -> bool:
    """QUIZ_ARCHIVER_PROXY_BYPASS_DOMAINS as Playwright reads it: comma-separated domains,
    each matching itself and its subdomains (a leading dot changes nothing)."""
    host = urlsplit(url).hostname or ""
    for rule in (rules or "").split(","):
        domain = rule.strip().lower().lstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False

