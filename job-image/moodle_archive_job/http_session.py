"""A `requests.Session` whose own `verify` holds even when REQUESTS_CA_BUNDLE or
CURL_CA_BUNDLE is set.

requests lets those variables replace a session's `verify=False` when a request does not
pass `verify` itself (psf/requests#3829), so QUIZ_ARCHIVER_SKIP_HTTPS_CERT_VALIDATION had no
effect wherever an image or a pod sets them (Debian-based images often do). With `verify`
off, urllib3's warning on every unverified request is silenced: the admin asked for it.
`configure` gives a session the runner's TLS and proxy settings (Moodle client, asset fetcher).
"""

from __future__ import annotations

from typing import Any

import requests
import urllib3


class ExplicitVerifySession(requests.Session):
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        verify = kwargs.setdefault("verify", self.verify)
        if verify is False:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]


def configure(
    session: requests.Session, *, verify: bool, proxies: dict[str, str] | None
) -> requests.Session:
    """proxies: requests_proxies' answer (None: the environment's proxy variables apply)."""
    session.verify = verify
    if proxies is not None:
        session.trust_env = False
        session.proxies.update(proxies)
    return session
