"""The watched copy of live ArchiveJobs and the capacity counts made from it."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from moodle_archive_operator.gateway.capacity import ListedCapacity, WatchedCapacity
from moodle_archive_operator.gateway.kube import KubeError
from moodle_archive_operator.gateway.livejobs import LiveJobCache
from moodle_archive_operator.gateway.metrics import GatewayMetrics
from moodle_archive_operator.gateway.watchstream import decode_event, split_lines
from tests.gateway.fakekube import FakeKube

GONE = KubeError(410, "Expired")


def job(uid: str, version: str, phase: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": f"archive-{uid}", "uid": uid, "resourceVersion": version}
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


class FakeWatchSource:
    """Lists answer from `list_results` (the last repeats); each watch reads its own queue."""

    def __init__(self, *list_results: tuple[list[dict[str, Any]], str] | KubeError) -> None:
        self.list_results = list(list_results)
        self.list_calls = 0
        self.watches: list[tuple[str, asyncio.Queue[Any]]] = []

    async def list_archivejobs_versioned(self, timeout: float) -> tuple[list[dict[str, Any]], str]:
        self.list_calls += 1
        result = self.list_results[min(self.list_calls, len(self.list_results)) - 1]
        if isinstance(result, KubeError):
            raise result
        return copy.deepcopy(result[0]), result[1]

    def watch_archivejobs(self, version: str, timeout_sec: int) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.watches.append((version, queue))

        async def stream() -> AsyncIterator[dict[str, Any]]:
            while (item := await queue.get()) is not None:  # None: the server ends the watch
                if isinstance(item, KubeError):
                    raise item
                yield item

        return stream()

    def send(self, *items: Any) -> None:
        for item in items:
            self.watches[-1][1].put_nowait(item)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def run_with_cache(
    source: FakeWatchSource, body: Callable[[LiveJobCache], Awaitable[None]]
) -> None:
    async def main() -> None:
        cache = LiveJobCache(source, retry_delay=0.01)
        task = asyncio.create_task(cache.run())
        try:
            await body(cache)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())


def uids(cache: LiveJobCache) -> set[str]:
    return {o["metadata"]["uid"] for o in cache.objects()}


def test_events_keep_the_copy_current_and_wake_waiters() -> None:
    source = FakeWatchSource(([job("a", "5")], "10"))

    async def body(cache: LiveJobCache) -> None:
        await until(lambda: cache.synced and len(source.watches) == 1)
        assert source.watches[0][0] == "10" and uids(cache) == {"a"}
        waiting = asyncio.create_task(cache.wait_seen("b", 2.0))
        source.send(event("ADDED", job("b", "11")), event("DELETED", job("a", "12")))
        assert await waiting
        await until(lambda: uids(cache) == {"b"})
        # Seen stays true after the job is gone (it may be deleted before we look).
        source.send(event("DELETED", job("b", "13")))
        await until(lambda: not cache.objects())
        assert await cache.wait_seen("b", 0.01)
        assert not await cache.wait_seen("never", 0.01)

    run_with_cache(source, body)


def test_a_finished_watch_resumes_from_the_last_version_or_bookmark() -> None:
    source = FakeWatchSource(([], "10"))

    async def body(cache: LiveJobCache) -> None:
        await until(lambda: len(source.watches) == 1)
        source.send(event("ADDED", job("a", "11")), event("BOOKMARK", {"metadata": {
            "resourceVersion": "20"}}), None)
        await until(lambda: len(source.watches) == 2)
        assert source.watches[1][0] == "20" and source.list_calls == 1 and uids(cache) == {"a"}

    run_with_cache(source, body)


def test_410_gone_lists_again_and_replaces_the_copy() -> None:
    source = FakeWatchSource(([job("a", "5"), job("b", "6")], "10"), ([job("b", "6")], "30"))

    async def body(cache: LiveJobCache) -> None:
        await until(lambda: len(source.watches) == 1)
        source.send(GONE)
        await until(lambda: len(source.watches) == 2)
        assert source.list_calls == 2 and source.watches[1][0] == "30"
        assert uids(cache) == {"b"} and cache.synced

    run_with_cache(source, body)


def test_failed_lists_leave_the_copy_unsynced_until_one_succeeds() -> None:
    source = FakeWatchSource(
        KubeError(None, "MaxRetryError"), ([job("a", "5")], "10"), KubeError(503, "Unavailable"),
        ([], "40"),
    )

    async def body(cache: LiveJobCache) -> None:
        await until(lambda: cache.synced)
        assert source.list_calls == 2 and uids(cache) == {"a"}
        source.send(KubeError(None, "ProtocolError"))  # broken watch: list again (fails once)
        await until(lambda: source.list_calls == 4 and cache.synced)
        assert not cache.objects() and source.watches[-1][0] == "40"

    run_with_cache(source, body)


def watched(
    cache: LiveJobCache, kube: FakeKube, settle: float = 0.05
) -> tuple[WatchedCapacity, GatewayMetrics]:
    metrics = GatewayMetrics()
    return WatchedCapacity(cache, ListedCapacity(kube), metrics, settle), metrics


def rechecks(metrics: GatewayMetrics, source: str) -> float:
    return metrics.recheck.labels(source)._value.get()


def test_the_recheck_counts_from_the_copy_once_our_job_is_seen() -> None:
    source = FakeWatchSource(([job("a", "5", "Running"), job("z", "6", "Succeeded")], "10"))
    kube = FakeKube()

    async def body(cache: LiveJobCache) -> None:
        capacity, metrics = watched(cache, kube, settle=2.0)
        await until(lambda: len(source.watches) == 1)
        assert await capacity.ready(1.0) and not await capacity.is_full(2, 1.0)
        ours = job("ours", "12")
        counting = asyncio.create_task(capacity.count_live_with(ours, 5.0))
        # Another replica's job, committed before ours, arrives first: it is counted.
        source.send(event("ADDED", job("other", "11")), event("ADDED", ours))
        assert await counting == 3
        assert kube.calls == [] and rechecks(metrics, "watch") == 1
        # Full by the copy: only a list may refuse (the copy may lag behind a job ending).
        assert not await capacity.is_full(3, 1.0) and kube.calls == ["list_archivejobs"]

    run_with_cache(source, body)


def test_a_lagging_watch_falls_back_to_a_list_and_resyncs() -> None:
    source = FakeWatchSource(([], "10"))
    kube = FakeKube()
    kube.add_archivejob("archive-ours")
    kube.add_archivejob("archive-other", "Queued")

    async def body(cache: LiveJobCache) -> None:
        capacity, metrics = watched(cache, kube)
        await until(lambda: len(source.watches) == 1)
        assert await capacity.count_live_with(job("ours", "12"), 5.0) == 2
        assert kube.calls == ["list_archivejobs"] and rechecks(metrics, "list") == 1
        await until(lambda: source.list_calls == 2 and len(source.watches) == 2)

    run_with_cache(source, body)


def test_without_a_synced_copy_every_count_is_a_list() -> None:
    source = FakeWatchSource(KubeError(None, "MaxRetryError"))
    kube = FakeKube()
    kube.add_archivejob("archive-a")

    async def body(cache: LiveJobCache) -> None:
        capacity, metrics = watched(cache, kube)
        await until(lambda: source.list_calls >= 1)
        assert not await capacity.ready(1.0)
        assert await capacity.is_full(1, 1.0)
        assert await capacity.count_live_with(job("a", "3"), 1.0) == 1
        assert kube.calls == ["list_archivejobs"] * 2 and rechecks(metrics, "list") == 1

    run_with_cache(source, body)


def test_watch_lines_and_events() -> None:
    chunks = [b'{"type":"ADDED","obj', b'ect":{"a":1}}\n\n{"type":"BOOK', b'MARK","object":{}}']
    lines = list(split_lines(iter(chunks)))
    assert [decode_event(line)["type"] for line in lines] == ["ADDED", "BOOKMARK"]
    with pytest.raises(KubeError) as info:
        decode_event(b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}')
    assert (info.value.status, info.value.reason) == (410, "Expired")
    with pytest.raises(KubeError):
        decode_event(b'{"type":"ADDED"}')
