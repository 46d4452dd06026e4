"""Moodle's scripts, kept for the whole job once fetched (and patched).

Every attempt gets a fresh browser context, so without this each report would download
Moodle's JavaScript again (polyfills, YUI, RequireJS and its module bundle: a megabyte or
more) from Moodle. Only responses HTTP lets anyone cache are kept: status 200 and a
Cache-Control with a positive max-age and none of no-store, no-cache, private. Moodle sends
that for its revisioned script URLs, and no-cache in developer mode (theme designer, no JS
caching), where nothing is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# The body is stored decoded; these would describe the encoded one.
_DROPPED_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


@dataclass(frozen=True)
class CachedScript:
    status: int
    headers: dict[str, str]
    body: bytes
    patched: bool  # the login redirect was taken out


class ScriptCache:
    """Least recently used first out, bounded by the size of the bodies."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedScript] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, url: str) -> CachedScript | None:
        entry = self._entries.get(url)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(url)
        self.hits += 1
        return entry

    def put(
        self, url: str, status: int, headers: Mapping[str, str], body: bytes, patched: bool
    ) -> None:
        if status != 200 or not cacheable(headers) or len(body) > self.max_bytes:
            return
        kept = {k: v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}
        old = self._entries.pop(url, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[url] = CachedScript(status, kept, body, patched)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)


def cacheable(headers: Mapping[str, str]) -> bool:
    value = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
    directives = [d.strip().lower() for d in value.split(",") if d.strip()]
    if any(d in ("no-store", "no-cache", "private") for d in directives):
        return False
    for directive in directives:
        name, _, argument = directive.partition("=")
        if name.strip() == "max-age":
            try:
                return int(argument.strip().strip('"')) > 0
            except ValueError:
                return False
    return False
