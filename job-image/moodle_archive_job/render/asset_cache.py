"""Static page resources of one job, in memory, shared by all its concurrent pages.

Each browser context has a cache of its own, and contexts come and go (one per slot, each
serving at most 20 attempts, slots.py), so without this each new context would download
MathJax (about 1 MB and its fonts), the theme's stylesheets, fonts and images and Moodle's
JavaScript again. What may be kept and for how long is cache_policy's decision. Bounded by
the size of the bodies (least recently used out first); a body larger than a quarter of the
bound is passed on but not kept. Concurrent requests for a URL not yet kept share one fetch
(`fetch_once`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CachedAsset:
    status: int
    headers: dict[str, str]
    body: bytes
    patched: bool  # a Moodle script whose login redirect was taken out
    expires: float = math.inf  # time.monotonic() after which it is stale


class AssetCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_bytes // 4
        self._entries: OrderedDict[str, CachedAsset] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[str, asyncio.Future[CachedAsset | None]] = {}
        self.hits = 0
        self.fetches = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, url: str) -> CachedAsset | None:
        entry = self._entries.get(url)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._drop(url)
            return None
        self._entries.move_to_end(url)
        self.hits += 1
        return entry

    def would_keep(self, size: int, expires: float) -> bool:
        return size <= self.max_entry_bytes and expires > time.monotonic()

    def put(self, url: str, entry: CachedAsset) -> bool:
        """Keep `entry` unless it is stale or too large; True if kept."""
        if not self.would_keep(len(entry.body), entry.expires):
            return False
        self._drop(url)
        self._entries[url] = entry
        self._bytes += len(entry.body)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def clear(self) -> None:
        for url in list(self._entries):
            self._drop(url)

    async def fetch_once(
        self, url: str, fetch: Callable[[], Awaitable[CachedAsset | None]]
    ) -> CachedAsset | None:
        """The kept entry, or one fetch shared by everyone asking for `url` meanwhile.

        `fetch` returns what to keep, or None when the response may not be kept; then (and
        when the shared fetch failed) the callers that waited get None and fetch themselves.
        The caller whose `fetch` ran gets its exceptions.
        """
        entry = self.get(url)
        if entry is not None:
            return entry
        pending = self._inflight.get(url)
        if pending is not None:
            entry = await asyncio.shield(pending)
            if entry is not None:
                self.hits += 1
            return entry
        future: asyncio.Future[CachedAsset | None] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        self.fetches += 1
        entry = None
        try:
            entry = await fetch()
            if entry is not None:
                self.put(url, entry)
            return entry
        finally:
            del self._inflight[url]
            future.set_result(entry)

    def _drop(self, url: str) -> None:
        old = self._entries.pop(url, None)
        if old is not None:
            self._bytes -= len(old.body)
