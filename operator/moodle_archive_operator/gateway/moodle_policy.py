"""Which Moodle sites the gateway serves: the allow-list and the private-address rules.

The request parser already checks the shape of every URL and that the ws, upload and
backup URLs share the base URL's origin. This policy adds what the reference worker
lacks (spec 7.2): the base URL must be on the allow-list, and every URL derived from
the task must lie within the same allowed site. Without an allow-list (only when the
admin set MAO_ALLOW_ANY_MOODLE) loopback, private and link-local hosts
are refused unless explicitly permitted, including names that resolve to them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from moodle_archive_job.request_parsing import MSG_INVALID_PREFIX, RequestRejected
from moodle_archive_job.task import ArchiveTask

MAX_URL_LEN = 2048
MAX_DOWNLOAD_URL_LEN = 4096
MAX_BACKUPS = 16
MAX_SECTIONS = 64
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ENCODED_TRAVERSAL = ("%2e", "%2f", "%5c", "%00")

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(
            scheme=scheme,
            host=(parts.hostname or "").lower(),
            port=parts.port or _DEFAULT_PORTS.get(scheme, 0),
            path=parts.path,
        )


@dataclass(frozen=True)
class AllowedSite:
    """One allow-list entry: an origin, optionally narrowed to a path (a Moodle in a subdir)."""

    scheme: str
    host: str
    port: int
    path: str  # "" for a whole origin, else "/moodle" (no trailing slash)

    @classmethod
    def parse(cls, entry: str) -> AllowedSite:
        try:
            parts = urlsplit(entry.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"allowed Moodle URL {entry!r} is not a URL") from exc
        scheme = parts.scheme.lower()
        if (
            scheme not in _DEFAULT_PORTS
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"allowed Moodle URL {entry!r} must be http(s)://host[:port][/path] "
                "without credentials, query or fragment"
            )
        path = parts.path.rstrip("/")
        if _suspicious_path(path):
            raise ValueError(f"allowed Moodle URL {entry!r} has a suspicious path")
        return cls(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], path)

    def contains(self, url: _Url, exact: bool = False) -> bool:
        """Is `url` on this site (and, with `exact`, the site's base itself)?"""
        if (url.scheme, url.host, url.port) != (self.scheme, self.host, self.port):
            return False
        path = url.path.rstrip("/")
        if exact:
            return path == self.path if self.path else True
        return not self.path or path == self.path or path.startswith(self.path + "/")

    def __str__(self) -> str:
        default = _DEFAULT_PORTS[self.scheme] == self.port
        netloc = self.host if default else f"{self.host}:{self.port}"
        if ":" in self.host:
            netloc = f"[{self.host}]" if default else f"[{self.host}]:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"


def _suspicious_path(path: str) -> bool:
    lowered = path.lower()
    return any(seg in (".", "..") for seg in path.split("/")) or any(
        marker in lowered for marker in _ENCODED_TRAVERSAL
    )


def _invalid(detail: str) -> RequestRejected:
    return RequestRejected(MSG_INVALID_PREFIX + detail, 400, "invalid")


def _not_allowed(what: str) -> RequestRejected:
    return RequestRejected(
        f"{MSG_INVALID_PREFIX}{what} is not allowed by this archive worker.", 403, "not_allowed"
    )


def _private_host() -> RequestRejected:
    return RequestRejected(
        f"{MSG_INVALID_PREFIX}Moodle base URL points to a loopback, private or link-local "
        "address, which this archive worker does not allow.",
        403,
        "private_host",
    )


def is_non_public_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _is_local_name(host: str) -> bool:
    host = host.rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class MoodlePolicy:
    sites: tuple[AllowedSite, ...]
    allow_private: bool = False
    resolve_timeout_sec: float = 2.0

    def check(self, task: ArchiveTask) -> None:
        """Synchronous rules: lengths, allow-list membership of every URL, literal addresses."""
        _check_limits(task)
        base = _Url.parse(task.moodle.base_url)
        derived: list[tuple[str, str]] = [
            ("Webservice REST base URL", task.moodle.ws_url),
            ("Webservice upload URL", task.moodle.upload_url),
            *(("Moodle backup file download URL", b.file_download_url) for b in task.backups),
        ]
        if _suspicious_path(base.path):
            raise _invalid("Base URL is invalid")
        for what, url in derived:
            if _suspicious_path(_Url.parse(url).path):
                raise _invalid(f"{what} is invalid")
        if self.sites and not any(s.contains(base, exact=True) for s in self.sites):
            raise _not_allowed("Moodle base URL")
        # Every derived URL must lie within the Moodle at the base URL (hence its site).
        base_site = AllowedSite(base.scheme, base.host, base.port, base.path.rstrip("/"))
        for what, url in derived:
            if not base_site.contains(_Url.parse(url)):
                raise _not_allowed(what)
        if (
            not self.sites
            and not self.allow_private
            and (_is_local_name(base.host) or is_non_public_address(base.host))
        ):
            raise _private_host()

    async def check_resolved(self, task: ArchiveTask, resolver: Resolver = resolve_host) -> None:
        """Open mode only: refuse names that resolve to non-public addresses.

        A name that does not resolve passes here; the connection probe then fails
        with the reference worker's message. This narrows SSRF but cannot stop DNS
        rebinding: the NetworkPolicy of the job pods is the real fence.
        """
        if self.sites or self.allow_private:
            return
        base = _Url.parse(task.moodle.base_url)
        try:
            addresses = await asyncio.wait_for(
                resolver(base.host, base.port), self.resolve_timeout_sec
            )
        except (OSError, TimeoutError, UnicodeError):
            return
        if any(is_non_public_address(a) for a in addresses):
            raise _private_host()


def _check_limits(task: ArchiveTask) -> None:
    """Bounds the CRD enforces, checked here so Moodle gets a clear message instead."""
    for what, url in (
        ("Base URL", task.moodle.base_url),
        ("Webservice REST base URL", task.moodle.ws_url),
        ("Webservice upload URL", task.moodle.upload_url),
    ):
        if len(url) > MAX_URL_LEN:
            raise _invalid(f"{what} is too long")
    if len(task.backups) > MAX_BACKUPS:
        raise _invalid("Too many Moodle backups requested.")
    if any(len(b.file_download_url) > MAX_DOWNLOAD_URL_LEN for b in task.backups):
        raise _invalid("Moodle backup file download URL is too long")
    if task.attempts is not None and len(task.attempts.sections) > MAX_SECTIONS:
        raise _invalid("Attempt report sections are invalid.")


def describe_sites(sites: Iterable[AllowedSite]) -> str:
    return ", ".join(str(s) for s in sites)
