"""Counting live ArchiveJobs for the capacity check and its atomic re-check.

`ListedCapacity` asks the API server each time (a list before, a list after our
create). `WatchedCapacity` counts from the replica's `LiveJobCache` instead and
falls back to a list whenever the copy cannot be trusted.

The re-check's guarantee (never over capacity, with any number of replicas): a count
that includes every job created before ours. A list made after our create has that
property; so has the watched copy once it has seen our own job's event, because
events arrive in the order etcd committed them. If our event does not come within
`settle_sec`, the copy is told to list again and this count is made by a list.
"""

from __future__ import annotations

from typing import Any, Protocol

from .jobqueue import live_jobs
from .kube import KubeApi
from .livejobs import LiveJobCache
from .metrics import GatewayMetrics


class Capacity(Protocol):
    async def is_full(self, capacity: int, timeout: float) -> bool:
        """The pre-check: may let a task through that the re-check then refuses."""
        ...

    async def count_live_with(self, created: dict[str, Any], timeout: float) -> int:
        """Live jobs, counted after `created` and every job created before it."""
        ...

    async def ready(self, timeout: float) -> bool: ...


class ListedCapacity:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def count_live(self, timeout: float) -> int:
        return len(live_jobs(await self._kube.list_archivejobs(timeout)))

    async def is_full(self, capacity: int, timeout: float) -> bool:
        return await self.count_live(timeout) >= capacity

    async def count_live_with(self, created: dict[str, Any], timeout: float) -> int:
        return await self.count_live(timeout)

    async def ready(self, timeout: float) -> bool:
        await self._kube.list_archivejobs(timeout)
        return True


class WatchedCapacity:
    def __init__(
        self,
        cache: LiveJobCache,
        listed: ListedCapacity,
        metrics: GatewayMetrics,
        settle_sec: float = 1.0,
    ) -> None:
        self._cache = cache
        self._listed = listed
        self._metrics = metrics
        self._settle_sec = settle_sec

    async def is_full(self, capacity: int, timeout: float) -> bool:
        # The copy may lag a moment behind a job that just ended: refuse only on a list.
        if self._cache.synced and self._cache.live_count() < capacity:
            return False
        return await self._listed.is_full(capacity, timeout)

    async def count_live_with(self, created: dict[str, Any], timeout: float) -> int:
        uid = str(created.get("metadata", {}).get("uid") or "")
        wait = min(self._settle_sec, max(0.0, timeout - 1.0))
        seen = uid and self._cache.synced and await self._cache.wait_seen(uid, wait)
        if seen and self._cache.synced:  # still synced: no failed re-list since
            self._metrics.recheck.labels("watch").inc()
            return self._cache.live_count()
        if self._cache.synced:
            self._cache.resync()  # our own job's event did not come: the watch lags
        self._metrics.recheck.labels("list").inc()
        return await self._listed.count_live(timeout)

    async def ready(self, timeout: float) -> bool:
        return self._cache.synced
