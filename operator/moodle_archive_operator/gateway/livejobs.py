"""A watch-fed copy of the live ArchiveJobs, one per gateway replica.

One list, then one watch from the list's resourceVersion; a watch that ends is
resumed from the last version seen (bookmarks included), an expired one (410 Gone)
or a broken one is replaced by a fresh list. Until the first list succeeds, and
after a list fails, the copy is not `synced` and must not be used.

The API server sends a watch's events in resourceVersion order (etcd's order), and
the copy applies them in that order, so once it has seen an event of an object, it
has seen every change committed before that object's. `wait_seen` waits for that
point; `seen` remembers the most recent uids (not only live ones: an ArchiveJob can
be deleted before its own event arrives).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

import anyio

from .jobqueue import is_live
from .kubeerror import KubeError

log = logging.getLogger("moodle_archive_operator.gateway")


@runtime_checkable
class ArchiveJobWatchSource(Protocol):
    async def list_archivejobs_versioned(
        self, timeout: float
    ) -> tuple[list[dict[str, Any]], str]: ...

    def watch_archivejobs(
        self, resource_version: str, timeout_sec: int
    ) -> AsyncIterator[dict[str, Any]]: ...


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class LiveJobCache:
    def __init__(
        self,
        source: ArchiveJobWatchSource,
        *,
        list_timeout: float = 5.0,
        watch_timeout_sec: int = 240,
        retry_delay: float = 1.0,
        remember: int = 4096,
    ) -> None:
        self._source = source
        self._list_timeout = list_timeout
        self._watch_timeout_sec = watch_timeout_sec
        self._retry_delay = retry_delay
        self._remember = remember
        self._objects: dict[str, dict[str, Any]] = {}
        self._live: set[str] = set()  # uids of the objects that are live (`is_live`)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._follow_scope: anyio.CancelScope | None = None
        self.synced = False
        self.lists = 0  # how many times the copy was (re)built from a list

    def objects(self) -> list[dict[str, Any]]:
        return list(self._objects.values())

    def live_count(self) -> int:
        return len(self._live)

    def seen(self, uid: str) -> bool:
        return uid in self._seen

    async def wait_seen(self, uid: str, timeout: float) -> bool:
        """True once an event of `uid` was applied; False if none came within `timeout`."""
        if self.seen(uid):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(uid, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(uid, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(uid, None)

    def resync(self) -> None:
        """The watch seems to lag: replace it by a fresh list."""
        if self._follow_scope is not None:
            self._follow_scope.cancel()

    async def run(self) -> None:
        """Keep the copy current until cancelled."""
        while True:
            try:
                items, version = await self._source.list_archivejobs_versioned(self._list_timeout)
            except KubeError as exc:
                self.synced = False
                log.warning(
                    "could not list ArchiveJobs for the live copy",
                    extra={"fields": {"status": exc.status, "reason": exc.reason}},
                )
                await asyncio.sleep(self._retry_delay)
                continue
            self._replace(items)
            try:
                with anyio.CancelScope() as scope:
                    self._follow_scope = scope
                    await self._follow(version)
            except KubeError as exc:
                if exc.status != 410:
                    log.warning(
                        "the ArchiveJob watch failed; listing again",
                        extra={"fields": {"status": exc.status, "reason": exc.reason}},
                    )
                    await asyncio.sleep(self._retry_delay)
            finally:
                self._follow_scope = None

    async def _follow(self, version: str) -> None:
        while True:
            events = 0
            async for event in self._source.watch_archivejobs(version, self._watch_timeout_sec):
                version = self._apply(event) or version
                events += 1
            if not events:  # ended at once, or quiet for a whole watch: do not spin
                await asyncio.sleep(self._retry_delay)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        self._objects = {_uid(o): o for o in items if _uid(o)}
        self._live = {uid for uid, obj in self._objects.items() if is_live(obj)}
        for uid in self._objects:
            self._mark_seen(uid)
        self.synced = True
        self.lists += 1

    def _apply(self, event: dict[str, Any]) -> str:
        obj = event["object"]
        kind = event.get("type")
        if kind == "BOOKMARK":
            return _version(obj)
        uid = _uid(obj)
        if not uid:
            return _version(obj)
        if kind == "DELETED":
            self._objects.pop(uid, None)
            self._live.discard(uid)
        elif kind in ("ADDED", "MODIFIED"):
            self._objects[uid] = obj
            if is_live(obj):
                self._live.add(uid)
            else:
                self._live.discard(uid)
        self._mark_seen(uid)
        return _version(obj)

    def _mark_seen(self, uid: str) -> None:
        self._seen[uid] = None
        self._seen.move_to_end(uid)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        for future in self._waiters.pop(uid, []):
            if not future.done():
                future.set_result(None)
