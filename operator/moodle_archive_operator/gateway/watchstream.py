"""A Kubernetes watch answer (JSON lines over a long HTTP response) as an async iterator.

The blocking response is read in its own thread (not the shared worker pool: a watch
lasts minutes); events cross to the event loop through a queue. An `ERROR` event
becomes `KubeError(code)`, so 410 Gone (the version to resume from is too old) can be
told apart. Leaving the iteration early shuts the response down, which ends the thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from typing import Any

import anyio
import urllib3

from .kubeerror import KubeError

_END = object()


def split_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Complete non-empty lines of a byte stream cut anywhere."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def decode_event(line: bytes) -> dict[str, Any]:
    """One watch event; `ERROR` events (a Status object) raise `KubeError`."""
    event = json.loads(line)
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise KubeError(None, "MalformedWatchEvent")
    if event.get("type") == "ERROR":
        status = event["object"]
        code = status.get("code")
        reason = str(status.get("reason") or "error")
        raise KubeError(code if isinstance(code, int) else None, reason)
    return event


async def watch_stream(
    open_response: Callable[[], urllib3.BaseHTTPResponse],
) -> AsyncIterator[dict[str, Any]]:
    response = await anyio.to_thread.run_sync(open_response)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def pump() -> None:
        item: Any = _END
        try:
            for line in split_lines(response.stream(None, decode_content=True)):
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except Exception as exc:  # the connection broke or was shut down
            item = KubeError(None, type(exc).__name__)
        finally:
            response.close()  # a watch connection is never reused
            response.release_conn()
            with suppress(RuntimeError):  # a closed loop: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, item)

    reader = threading.Thread(target=pump, name="archivejob-watch", daemon=True)
    reader.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, KubeError):
                raise item
            yield decode_event(item)
    finally:
        with suppress(Exception):  # already ended: nothing to stop
            response.shutdown()
