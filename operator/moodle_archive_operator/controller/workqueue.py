"""A coalescing work queue of object names, and per-name locks.

A name added while queued is not queued twice; a name added while being processed
is processed once more afterwards, so every change is seen, one at a time per name
(the shape of client-go's workqueue).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, name: str) -> None:
        if name in self._processing:
            self._dirty.add(name)
        elif name not in self._queued:
            self._queued.add(name)
            self._queue.put_nowait(name)

    def add_after(self, name: str, delay: float) -> None:
        """Add `name` after `delay` seconds (an earlier pending wake-up wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        timer = self._timers.get(name)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[name] = loop.call_at(when, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.add(name)

    async def get(self) -> str:
        name = await self._queue.get()
        self._queued.discard(name)
        self._processing.add(name)
        return name

    def done(self, name: str) -> None:
        self._processing.discard(name)
        if name in self._dirty:
            self._dirty.discard(name)
            self.add(name)

    def forget(self, name: str) -> None:
        """Drop a pending delayed wake-up (the object is gone)."""
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class KeyedLocks:
    """One asyncio.Lock per name, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users <= 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)
