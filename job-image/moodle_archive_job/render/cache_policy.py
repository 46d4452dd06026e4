"""Which page resources the job's asset cache may keep, and for how long.

Never kept, never even fetched by the job (the pattern below; Chromium fetches them for the
page itself, see routes.py): anything Moodle answers per user or per request: web service
and AJAX calls, files served by pluginfile.php (any flavour), login pages, and URLs with a
token or session key in the query. Beyond that, a
request whose URL or headers carry a registered secret (the job's token, see logs.py) or an
Authorization header is never kept either.

Of the rest, a response is kept only with status 200, no Set-Cookie and no `Vary: *`, and:

* Moodle's revisioned URLs (theme styles, fonts and images, javascript.php, requirejs.php,
  yui_combo.php, with a positive revision, on the Moodle site): for the whole job, unless
  `Cache-Control: no-store`. Moodle changes the revision whenever their content changes
  (theme or JS caches purged), so a revisioned URL names one content; its `private` or
  `no-cache`, if a proxy or a plugin adds them, are not followed, as the cache is private to
  the job (one user, one token) and the URL cannot go stale. In developer mode
  (theme designer mode, cachejs off) Moodle uses revision -1 and no-cache: not kept.
* Any other URL (MathJax from a CDN or from Moodle, other fixed URLs) only when HTTP says a
  cache may keep it: `max-age` > 0 (less `Age`) or an `Expires` after `Date`, and none of
  `no-store`, `no-cache`, `private`; kept until it expires.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from moodle_archive_job.logs import redact

# http(s) URLs that are no web service, AJAX, pluginfile or login URL and carry no token or
# session key in the query: the ones the asset cache may fetch.
FETCHABLE_URL = re.compile(
    r"^https?://"
    r"(?![^?#]*(?:pluginfile\.php|/webservice/|/lib/ajax/|/login/))"
    r"(?![^#]*[?&](?:ws)?token=)(?![^#]*[?&]sesskey=)",
    re.IGNORECASE,
)

_REVISIONED_PATH = re.compile(
    r"^/(?:"
    r"theme/styles\.php/[^/]+/(?P<styles>\d+)(?:_\d+)?/"
    r"|theme/(?:font|image)\.php/(?:_s/)?[^/]+/[^/]+/(?P<theme>\d+)/"
    r"|lib/(?:javascript|requirejs)\.php/(?P<js>\d+)/"
    r")"
)
_REVISIONED_SCRIPT = re.compile(
    r"^/(?:theme/(?:styles|font|image)|lib/(?:javascript|requirejs))\.php$"
)
_QUERY_REVISION = re.compile(r"(?:^|&)(?:rev=|file=/|file=%2F)(\d+)(?:[&/]|%2F|$)", re.I)


def may_fetch(url: str) -> bool:
    return bool(FETCHABLE_URL.match(url))


def carries_secret(url: str, headers: Mapping[str, str]) -> bool:
    """The request shows the job's token (or any registered secret) or credentials."""
    if redact(url) != url or not may_fetch(url):
        return True
    for name, value in headers.items():
        if name.lower() == "authorization" or redact(value) != value:
            return True
    return False


def is_revisioned(url: str, roots: Iterable[str]) -> bool:
    """A Moodle URL whose path or query holds the theme's or the JavaScript's revision."""
    for root in roots:
        if url.startswith(root + "/"):
            rest = urlsplit(url[len(root) :])
            break
    else:
        return False
    match = _REVISIONED_PATH.match(rest.path)
    if match is not None:
        return int(next(g for g in match.groups() if g is not None)) > 0
    if rest.path == "/theme/yui_combo.php":
        return bool(rest.query) and "/-1/" not in rest.query and not rest.query.startswith("-1/")
    if _REVISIONED_SCRIPT.match(rest.path):
        found = _QUERY_REVISION.search(rest.query)
        return found is not None and int(found.group(1)) > 0
    return False


def lifetime(status: int, headers: Mapping[str, str], *, revisioned: bool) -> float | None:
    """Seconds this response may be served from the cache (inf: the whole job); None: never."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if status != 200 or "set-cookie" in lowered or lowered.get("vary", "").strip() == "*":
        return None
    directives = _directives(lowered.get("cache-control", ""))
    if "no-store" in directives:
        return None
    if revisioned:
        return math.inf
    if "no-cache" in directives or "private" in directives:
        return None
    age = _seconds(lowered.get("age")) or 0
    max_age = _seconds(directives.get("max-age"))
    if max_age is not None:
        return max_age - age if max_age > age else None
    expires, date = _http_date(lowered.get("expires")), _http_date(lowered.get("date"))
    if expires is not None and date is not None and expires > date:
        return expires - date - age if expires - date > age else None
    return None


def _directives(value: str) -> dict[str, str]:
    directives = {}
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = argument.strip().strip('"')
    return directives


def _seconds(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
