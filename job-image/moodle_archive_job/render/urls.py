"""URLs as they may appear in logs: without query strings, fragments or credentials.

Moodle puts tokens and session keys into query strings (`?token=`, `?sesskey=`), so nothing
that reaches a log keeps one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")
_DATA_URL_HEAD = 40


def loggable_url(url: str) -> str:
    if url.startswith("data:"):
        return url[:_DATA_URL_HEAD] + ("..." if len(url) > _DATA_URL_HEAD else "")
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_urls(text: str) -> str:
    """Drop the query string and fragment of every absolute URL in free text."""
    return _URL_IN_TEXT.sub(lambda m: m.group(1), text)
