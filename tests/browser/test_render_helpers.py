"""The renderer's pure helpers (no browser needed)."""

from __future__ import annotations

import time

import pytest

from moodle_archive_job.render.asset_cache import CachedAsset
from moodle_archive_job.render.chromium import launch_args, proxy_settings, without_credentials
from moodle_archive_job.render.interceptor import wildcard
from moodle_archive_job.render.login_redirect import LOGIN_URL_PATTERN, patch_login_redirect
from moodle_archive_job.render.paper import paper_size_css, paper_size_points
from moodle_archive_job.render.routes import (
    forwarded_headers,
    interception_patterns,
    kept_headers,
    moodle_roots,
    moodle_script_pattern,
)
from moodle_archive_job.render.urls import loggable_url, redact_urls
from moodle_archive_job.requests_proxies import bypasses_proxy, requests_proxies
from moodle_archive_job.settings import RunnerSettings
from moodle_archive_job.task import PaperFormat

# How Moodle's core/ajax has written the redirect over the years (source and built files).
REDIRECTS = [
    b'window.location = URL.relativeUrl("/login/index.php");',
    b'"servicerequireslogin"!==e.errorcode||n?r():window.location=URL.relativeUrl("/login/index.php")',
    b"window.location = MoodleURL.relativeUrl('/login/index.php');",
    b'window.location=_url.default.relativeUrl("/login/index.php")',
    b'window.location=(0,_url.relativeUrl)("/login/index.php")',
    b'window.location.href = URL.relativeUrl( "/login/index.php" )',
]


@pytest.mark.parametrize("source", REDIRECTS)
def test_login_redirect_snippets_are_patched(source: bytes) -> None:
    patched = patch_login_redirect(b"var a = 1;\n" + source + b"\nvar b = 2;")
    assert patched is not None
    assert b"relativeUrl" not in patched
    assert b"window.location" not in patched
    assert b"prevented redirect to /login/index.php" in patched
    assert patched.startswith(b"var a = 1;\n")
    assert patched.endswith(b"\nvar b = 2;")


def test_patched_ternary_stays_an_expression() -> None:
    patched = patch_login_redirect(REDIRECTS[1])
    assert patched is not None
    assert b"?r():void window.console.warn(" in patched


@pytest.mark.parametrize(
    "source",
    [
        b"var x = 1;",
        b'var help = "see /login/index.php for details";',  # mentions the page, no redirect
        b'window.location = "/course/view.php";',
    ],
)
def test_scripts_without_the_redirect_are_not_touched(source: bytes) -> None:
    assert patch_login_redirect(source) is None


@pytest.mark.parametrize(
    ("url", "blocked"),
    [
        ("https://moodle.example/login/index.php", True),
        ("https://moodle.example/moodle/login/index.php?sesskey=x", True),
        ("http://127.0.0.1:8080/login/token.php", True),
        ("https://moodle.example/login/", False),
        ("https://moodle.example/mod/quiz/review.php?next=/login/index.php", False),
        ("https://moodle.example/theme/login/style.css", False),
    ],
)
def test_login_url_pattern(url: str, blocked: bool) -> None:
    assert bool(LOGIN_URL_PATTERN.match(url)) is blocked


def test_script_roots_include_the_reports_base_href() -> None:
    html = '<head><base href="https://public.example/moodle"></head>'
    roots = moodle_roots("http://moodle.internal:8080/", html)
    assert roots == ["http://moodle.internal:8080", "https://public.example/moodle"]
    assert moodle_roots("https://m.example", "<head></head>") == ["https://m.example"]


@pytest.mark.parametrize(
    ("url", "routed"),
    [
        ("https://m.example/lib/requirejs.php/1795832315/core/first.js", True),
        ("https://m.example/lib/requirejs.php?file=/1795832315/core/ajax.js", True),
        ("https://m.example/lib/javascript.php/1795832315/lib/polyfills/polyfill.js", True),
        ("https://m.example/theme/yui_combo.php?rollup/3.18.1/yui-moodlesimple.js", True),
        ("https://m.example/mod/quiz/module.js", True),
        ("https://m.example/lib/mathjax/es5/tex-mml-chtml.js", False),  # large, never patched
        ("https://m.example/theme/styles.php/boost/1/all", False),
        ("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js", False),
        ("https://m.example.evil/lib/javascript.php/1/x.js", False),
    ],
)
def test_only_moodle_scripts_are_routed(url: str, routed: bool) -> None:
    assert bool(moodle_script_pattern(["https://m.example"]).match(url)) is routed


def test_loggable_urls_have_no_query_or_credentials() -> None:
    assert (
        loggable_url("https://user:pw@m.example:8443/webservice/pluginfile.php/1/a.png?token=abc#x")
        == "https://m.example:8443/webservice/pluginfile.php/1/a.png"
    )
    assert loggable_url("data:image/png;base64," + "A" * 500).endswith("...")
    text = "Failed https://m.example/lib/ajax/service.php?sesskey=s3cr3t&info=x (500)"
    assert redact_urls(text) == "Failed https://m.example/lib/ajax/service.php (500)"


def test_paper_sizes_are_exact() -> None:
    width, height = paper_size_points(PaperFormat.A4)
    assert (round(width, 2), round(height, 2)) == (595.28, 841.89)
    assert paper_size_css(PaperFormat.LETTER) == ("816.0000px", "1056.0000px")
    assert paper_size_points(PaperFormat.LEDGER) == (1224, 792)


def test_proxy_settings_split_credentials() -> None:
    settings = RunnerSettings(
        proxy_server_url="http://us%40er:p%3Ass@proxy.example:3128",
        proxy_bypass_domains="moodle.internal, .example.org",
    )
    assert proxy_settings(settings) == {
        "server": "http://proxy.example:3128",
        "username": "us@er",
        "password": "p:ss",
        "bypass": "moodle.internal,.example.org",
    }
    assert proxy_settings(RunnerSettings(proxy_server_url="false")) is None
    assert proxy_settings(RunnerSettings(proxy_server_url=None)) is None


def test_launch_args_keep_chromium_off_the_network() -> None:
    args = launch_args(("--extra",))
    for flag in (
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-gpu",
        "--disable-web-security",
    ):
        assert flag in args
    assert args[-1] == "--extra"


def test_fetch_patterns_take_urls_literally() -> None:
    assert wildcard("https://m.example/a*b?c\\d") == "https://m.example/a\\*b\\?c\\\\d"


def test_fetch_patterns_pause_only_what_the_attempt_answers() -> None:
    page_url = "https://m.example/mock/attempt/ab12"
    roots = ["https://m.example", "https://public.example/moodle"]
    report = {"urlPattern": page_url, "resourceType": "Document", "requestStage": "Request"}
    login = {"urlPattern": "*/login/*", "requestStage": "Request"}

    def urls(patterns: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(p["urlPattern"], p.get("resourceType", "")) for p in patterns[2:]]

    cached = interception_patterns(page_url, roots, prevent_login_redirect=True, assets=True)
    assert cached[:2] == [report, login]
    assert urls(cached) == [("*", kind) for kind in
                            ("Script", "Stylesheet", "Font", "Image", "XHR", "Fetch")]  # fmt: skip
    uncached = interception_patterns(page_url, roots, prevent_login_redirect=True, assets=False)
    assert uncached[:2] == [report, login]
    assert urls(uncached) == [("https://m.example/*", "Script"),
                              ("https://public.example/moodle/*", "Script")]  # fmt: skip
    bare = interception_patterns(page_url, roots, prevent_login_redirect=False, assets=False)
    assert bare == [report]


def test_kept_assets_tell_chromium_how_long_to_keep_them() -> None:
    headers = {"Content-Type": "text/css", "Cache-Control": "public, no-cache",
               "Expires": "Thu, 01 Jan 1970 00:00:00 GMT", "Age": "7", "ETag": '"x"'}  # fmt: skip
    forever = CachedAsset(200, headers, b"h1 {}", patched=False)
    soon = CachedAsset(200, headers, b"h1 {}", patched=False, expires=time.monotonic() + 600.5)
    gone = CachedAsset(200, headers, b"h1 {}", patched=False, expires=time.monotonic() - 5)

    assert kept_headers(forever) == [("Content-Type", "text/css"), ("ETag", '"x"'),
                                     ("Cache-Control", "max-age=31536000")]  # fmt: skip
    assert kept_headers(soon)[-1] in (("Cache-Control", "max-age=600"),
                                      ("Cache-Control", "max-age=599"))  # fmt: skip
    assert kept_headers(gone)[-1] == ("Cache-Control", "max-age=0")


def test_the_fetcher_asks_unconditionally() -> None:
    headers = {"Accept": "text/css", "If-None-Match": '"x"', "if-modified-since": "yesterday",
               "Range": "bytes=0-1", "Referer": "https://m.example/mock/attempt/ab12"}  # fmt: skip
    assert forwarded_headers(headers) == {
        "Accept": "text/css", "Referer": "https://m.example/mock/attempt/ab12"
    }
    assert forwarded_headers({"Accept-Encoding": "gzip, br, zstd"}) == {}


@pytest.mark.parametrize(
    ("url", "rules", "bypassed"),
    [
        ("https://moodle.example.org/x.js", "example.org", True),
        ("https://moodle.example.org/x.js", ".example.org", True),
        ("https://example.org/x.js", " .example.org , other.net", True),
        ("https://badexample.org/x.js", "example.org", False),
        ("https://cdn.jsdelivr.net/mathjax.js", "example.org", False),
        ("https://cdn.jsdelivr.net/mathjax.js", None, False),
        ("https://cdn.jsdelivr.net/mathjax.js", "", False),
    ],
)
def test_proxy_bypass_domains(url: str, rules: str | None, bypassed: bool) -> None:
    assert bypasses_proxy(url, rules) is bypassed


def test_requests_proxies_for_the_moodle_client() -> None:
    def proxies(**settings: str) -> dict[str, str] | None:
        return requests_proxies(RunnerSettings(**settings), "https://moodle.example.org")

    assert proxies() is None  # the environment's proxy variables apply
    assert proxies(proxy_server_url="false") == {}
    proxy = "http://u:p@proxy:3128"
    assert proxies(proxy_server_url=proxy) == {"http": proxy, "https": proxy}
    assert proxies(proxy_server_url=proxy, proxy_bypass_domains="example.org") == {}
    assert proxies(proxy_server_url=proxy, proxy_bypass_domains="other.org") == {
        "http": proxy, "https": proxy
    }


def test_playwright_gets_the_proxy_without_its_credentials() -> None:
    proxy = {"server": "http://proxy:3128", "username": "u", "password": "p:w", "bypass": "a.b"}
    assert without_credentials(proxy) == (
        {"server": "http://proxy:3128", "bypass": "a.b"}, ("u", "p:w")
    )
    assert without_credentials({"server": "http://proxy:3128"}) == (
        {"server": "http://proxy:3128"}, None
    )
    assert without_credentials(None) == (None, None)
