"""What the job's asset cache keeps, for how long, and within which bounds (no browser)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from moodle_archive_job.logs import register_secret, unregister_secret
from moodle_archive_job.render.asset_cache import AssetCache, CachedAsset
from moodle_archive_job.render.cache_policy import (
    carries_secret,
    is_revisioned,
    lifetime,
    may_fetch,
)

ROOTS = ["https://m.example/moodle"]
FOREVER = math.inf


@pytest.mark.parametrize(
    ("url", "revisioned"),
    [
        ("https://m.example/moodle/theme/styles.php/boost/1795832315_1795832527/all", True),
        ("https://m.example/moodle/theme/styles.php/boost/1795832315/all", True),
        ("https://m.example/moodle/theme/styles.php/boost/-1/all", False),  # theme designer
        ("https://m.example/moodle/theme/font.php/boost/core/1795832315/fa-solid-900.woff2", True),
        ("https://m.example/moodle/theme/image.php/boost/theme/1795832315/favicon", True),
        ("https://m.example/moodle/theme/image.php/_s/boost/core/1795832315/t/expanded", True),
        ("https://m.example/moodle/theme/image.php/boost/core/-1/t/expanded", False),
        ("https://m.example/moodle/lib/javascript.php/1795832315/lib/polyfills/polyfill.js", True),
        ("https://m.example/moodle/lib/javascript.php/-1/lib/javascript-static.js", False),
        ("https://m.example/moodle/lib/requirejs.php/1795832315/core/first.js", True),
        ("https://m.example/moodle/lib/requirejs.php?file=/1795832315/core/ajax.js", True),
        ("https://m.example/moodle/lib/requirejs.php?file=/-1/core/ajax.js", False),
        ("https://m.example/moodle/theme/styles.php?theme=boost&rev=1795832315&type=all", True),
        ("https://m.example/moodle/theme/yui_combo.php?rollup/3.18.1/yui-moodlesimple.js", True),
        ("https://m.example/moodle/theme/yui_combo.php?m/-1/core/a/a-min.js", False),
        ("https://m.example/moodle/lib/mathjax/es5/tex-mml-chtml.js", False),  # HTTP decides
        ("https://m.example/theme/styles.php/boost/1795832315/all", False),  # not the site
        ("https://cdn.example/moodle/theme/styles.php/boost/1795832315/all", False),
    ],
)
def test_moodle_revisioned_urls(url: str, revisioned: bool) -> None:
    assert is_revisioned(url, ROOTS) is revisioned


@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", True),
        ("https://m.example/theme/styles.php/boost/1/all", True),
        ("https://m.example/pluginfile.php/12/question/questiontext/1/1/3/a.png", False),
        ("https://m.example/webservice/pluginfile.php/12/mod_quiz/a.png", False),
        ("https://m.example/tokenpluginfile.php/abc/12/a.png", False),
        ("https://m.example/webservice/rest/server.php?wsfunction=x", False),
        ("https://m.example/lib/ajax/service.php?info=x", False),
        ("https://m.example/login/index.php", False),
        ("https://m.example/theme/image.php/boost/core/1/i.png?token=abc", False),
        ("https://m.example/x.js?a=1&wstoken=abc", False),
        ("https://m.example/x.js?sesskey=abc", False),
        ("data:image/png;base64,AAAA", False),
    ],
)
def test_never_cached_urls_are_not_even_fetched(url: str, fetched: bool) -> None:
    assert may_fetch(url) is fetched


def test_requests_showing_the_token_are_never_kept() -> None:
    token = "f" * 32
    register_secret(token)
    try:
        assert carries_secret(f"https://m.example/theme/x/{token}/a.css", {})
        assert carries_secret("https://m.example/a.css", {"x-moodle": f"t={token}"})
        assert carries_secret("https://m.example/a.css", {"Authorization": "Bearer x"})
        assert not carries_secret("https://m.example/a.css", {"accept": "text/css"})
    finally:
        unregister_secret(token)


@pytest.mark.parametrize(
    ("headers", "revisioned", "seconds"),
    [
        ({"Cache-Control": "public, max-age=31536000, immutable"}, False, 31536000),
        ({"Cache-Control": "max-age=600", "Age": "100"}, False, 500),
        ({"Cache-Control": "max-age=60", "Age": "100"}, False, None),
        ({"Cache-Control": "max-age=0"}, False, None),
        ({"Cache-Control": "no-cache, must-revalidate"}, False, None),
        ({"Cache-Control": "private, max-age=600"}, False, None),
        ({"Cache-Control": "no-store"}, False, None),
        ({}, False, None),
        (
            {"Expires": "Thu, 03 Dec 2026 10:00:00 GMT", "Date": "Thu, 03 Dec 2026 09:00:00 GMT"},
            False,
            3600,
        ),
        ({}, True, FOREVER),  # Moodle's revision names one content
        ({"Cache-Control": "private, max-age=0"}, True, FOREVER),
        ({"Cache-Control": "no-store"}, True, None),  # no-store always wins
        ({"Cache-Control": "max-age=600", "Set-Cookie": "MoodleSession=x"}, True, None),
        ({"Cache-Control": "max-age=600", "Vary": "*"}, False, None),
    ],
)
def test_lifetime_follows_http_and_moodle_revisions(
    headers: dict[str, str], revisioned: bool, seconds: float | None
) -> None:
    assert lifetime(200, headers, revisioned=revisioned) == seconds


def test_only_status_200_is_kept() -> None:
    for status in (203, 204, 206, 301, 404, 500, 503):
        assert lifetime(status, {"Cache-Control": "max-age=600"}, revisioned=True) is None


def asset(body: bytes, expires: float = FOREVER) -> CachedAsset:
    return CachedAsset(200, {}, body, patched=False, expires=expires)


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = AssetCache(max_bytes=20)
    for url in "abcd":
        assert cache.put(url, asset(b"1234"))
    assert cache.get("a") is not None  # a is now the most recent
    assert cache.put("e", asset(b"12345"))  # 21 bytes: b goes
    assert cache.get("b") is None
    assert {u for u in "acde" if cache.get(u)} == set("acde")
    assert cache.size_bytes == 17
    assert not cache.put("huge", asset(b"x" * 6))  # over a quarter of the bound: not kept
    assert cache.get("huge") is None
    assert not cache.put("stale", asset(b"1", expires=0.0))


def test_expired_entries_are_dropped() -> None:
    cache = AssetCache()
    assert cache.put("a", asset(b"1", expires=time.monotonic() + 0.05))
    assert cache.get("a") is not None
    time.sleep(0.06)
    assert cache.get("a") is None
    assert len(cache) == 0 and cache.size_bytes == 0


def test_concurrent_requests_share_one_fetch() -> None:
    async def scenario() -> tuple[list[CachedAsset | None], int]:
        cache = AssetCache()
        calls = 0

        async def fetch() -> CachedAsset:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return asset(b"mathjax")

        results = await asyncio.gather(*(cache.fetch_once("u", fetch) for _ in range(5)))
        results.append(await cache.fetch_once("u", fetch))
        return list(results), calls

    results, calls = asyncio.run(scenario())
    assert calls == 1
    assert all(r is not None and r.body == b"mathjax" for r in results)


def test_waiters_fetch_themselves_when_the_shared_fetch_fails_or_may_not_be_kept() -> None:
    async def scenario() -> tuple[list[object], int]:
        cache = AssetCache()
        calls = 0

        async def failing() -> CachedAsset | None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            raise OSError("refused")

        async def not_kept() -> CachedAsset | None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return None

        first = await asyncio.gather(
            *(cache.fetch_once("u", failing) for _ in range(3)), return_exceptions=True
        )
        second = await asyncio.gather(*(cache.fetch_once("v", not_kept) for _ in range(3)))
        return [*first, *second], calls

    results, calls = asyncio.run(scenario())
    assert isinstance(results[0], OSError)
    assert results[1:] == [None] * 5  # they fetch themselves; nothing is kept
    assert calls == 2
