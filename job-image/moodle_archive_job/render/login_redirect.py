"""Keeping Moodle from replacing the report with its login page.

The report page has no session. When one of Moodle's AJAX calls answers
`servicerequireslogin`, core/ajax sends the window to the login page:

    window.location = URL.relativeUrl("/login/index.php");

(`MoodleURL.relativeUrl(...)` in newer sources, `_url.default.relativeUrl(...)` or
`(0,_url.relativeUrl)(...)` once transpiled and minified). Three layers stop it:
the snippet is patched out of Moodle's scripts, the page cancels navigations to
/login/ (readiness.js), and requests to login/*.php are aborted.
"""

from __future__ import annotations

import re

# Cheap test before the regular expression: most scripts do not mention the login page at all.
LOGIN_PATH_MARKER = b"/login/index.php"

_REDIRECT = re.compile(
    rb"window\.location(?:\.href)?\s*=\s*"
    rb"(?:\(\s*0\s*,\s*)?[\w$]+(?:\.[\w$]+)*\.relativeUrl\s*\)?"
    rb"\(\s*([\"'])/login/index\.php\1\s*\)"
)
# An expression, so it fits wherever the assignment stood (statement, `a && b`, `c ? d : e`).
_REPLACEMENT = b'void window.console.warn("moodle-archive: prevented redirect to /login/index.php")'

# Requests Playwright aborts: any origin, like the reference worker's `**/login/*.php`.
LOGIN_URL_PATTERN = re.compile(
    r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]+(?:/[^?#]*)?/login/[^/?#]+\.php(?:[?#].*)?$"
)


def patch_login_redirect(source: bytes) -> bytes | None:
    """The script without Moodle's login redirect, or None when it has none."""
    if LOGIN_PATH_MARKER not in source:
        return None
    patched, count = _REDIRECT.subn(_REPLACEMENT, source)
    return patched if count else None
