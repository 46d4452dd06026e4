"""The Moodle allow-list and the private-address rules, without HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moodle_archive_job.request_parsing import RequestRejected, parse_archive_request
from moodle_archive_job.task import ArchiveTask, Protocol
from moodle_archive_operator.gateway.moodle_policy import (
    AllowedSite,
    MoodlePolicy,
    is_non_public_address,
)
from tests.unit.request_bodies import v7_body


def task_at(base: str, **overrides: Any) -> ArchiveTask:
    body = v7_body(
        moodle_base_url=base,
        moodle_ws_url=f"{base}/webservice/rest/server.php",
        moodle_upload_url=f"{base}/webservice/upload.php",
        task_moodle_backups=None,
    )
    body.update(overrides)
    return parse_archive_request(body, Protocol.QUIZ_ARCHIVER_V7).task


def refused(policy: MoodlePolicy, task: ArchiveTask) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        policy.check(task)
    return info.value


@pytest.mark.parametrize(
    ("entry", "site"),
    [
        ("https://moodle.example", ("https", "moodle.example", 443, "")),
        ("HTTPS://Moodle.Example:443/", ("https", "moodle.example", 443, "")),
        ("http://127.0.0.1:8081/moodle/", ("http", "127.0.0.1", 8081, "/moodle")),
        ("http://[::1]:8080", ("http", "::1", 8080, "")),
    ],
)
def test_allowed_site_parsing(entry: str, site: tuple[str, str, int, str]) -> None:
    parsed = AllowedSite.parse(entry)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.path) == site


@pytest.mark.parametrize(
    "entry",
    [
        "moodle.example",
        "ftp://moodle.example",
        "https://user:pw@moodle.example",
        "https://moodle.example/?x=1",
        "https://moodle.example:99999",
        "https://moodle.example/a/../b",
        "javascript:alert(1)",
        "file:///etc/passwd",
    ],
)
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowedSite.parse(entry)


def test_origin_entry_allows_any_moodle_on_it() -> None:
    policy = MoodlePolicy(sites=(AllowedSite.parse("https://moodle.example"),))
    policy.check(task_at("https://moodle.example"))
    policy.check(task_at("https://moodle.example/moodle"))
    assert refused(policy, task_at("http://moodle.example")).status_code == 403
    assert refused(policy, task_at("https://moodle.example:8443")).reason == "not_allowed"
    assert refused(policy, task_at("https://moodle.example.evil")).reason == "not_allowed"


def test_path_entry_allows_exactly_that_moodle() -> None:
    policy = MoodlePolicy(sites=(AllowedSite.parse("https://uni.example/moodle"),))
    policy.check(task_at("https://uni.example/moodle"))
    for other in ("https://uni.example", "https://uni.example/moodle2", "https://uni.example/x"):
        assert refused(policy, task_at(other)).message == (
            "JSON data is invalid: Moodle base URL is not allowed by this archive worker."
        )


def test_derived_urls_must_stay_inside_the_moodle() -> None:
    policy = MoodlePolicy(sites=(AllowedSite.parse("https://uni.example"),))
    task = task_at(
        "https://uni.example/moodle",
        moodle_ws_url="https://uni.example/other/webservice/rest/server.php",
    )
    assert refused(policy, task).message == (
        "JSON data is invalid: Webservice REST base URL is not allowed by this archive worker."
    )
    task = task_at(
        "https://uni.example/moodle",
        moodle_upload_url="https://uni.example/moodle/%2e%2e/webservice/upload.php",
    )
    assert refused(policy, task).message == "JSON data is invalid: Webservice upload URL is invalid"


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),  # noqa: S104
        ("::1", True),
        ("fd00::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:2800:220:1::1", False),
        ("moodle.example", False),
    ],
)
def test_non_public_addresses(address: str, private: bool) -> None:
    assert is_non_public_address(address) is private


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:8080", "http://localhost", "http://a.localhost", "http://[::1]", "http://10.0.0.5"],
)
def test_open_mode_refuses_private_hosts_unless_allowed(base: str) -> None:
    error = refused(MoodlePolicy(sites=()), task_at(base))
    assert error.status_code == 403 and error.reason == "private_host"
    MoodlePolicy(sites=(), allow_private=True).check(task_at(base))


def test_allow_list_may_name_a_loopback_moodle() -> None:
    MoodlePolicy(sites=(AllowedSite.parse("http://127.0.0.1:8080"),)).check(
        task_at("http://127.0.0.1:8080")
    )


def test_open_mode_refuses_names_resolving_to_private_addresses() -> None:
    asyncio.run(_open_mode_resolution())


async def _open_mode_resolution() -> None:
    async def resolves_to(*addresses: str) -> Any:
        async def resolver(host: str, port: int) -> list[str]:
            return list(addresses)

        return resolver

    async def unresolvable(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    policy = MoodlePolicy(sites=())
    task = task_at("https://moodle.example")
    with pytest.raises(RequestRejected) as info:
        await policy.check_resolved(task, await resolves_to("93.184.216.34", "10.0.0.1"))
    assert info.value.reason == "private_host"
    await policy.check_resolved(task, await resolves_to("93.184.216.34"))
    await policy.check_resolved(task, unresolvable)  # the probe will fail instead
    # With an allow-list the admin chose the hosts: no resolution at all.
    listed = MoodlePolicy(sites=(AllowedSite.parse("https://moodle.example"),))
    await listed.check_resolved(task, await resolves_to("10.0.0.1"))


def test_limits_the_crd_enforces_get_clear_messages() -> None:
    policy = MoodlePolicy(sites=(AllowedSite.parse("https://moodle.example"),))
    long_base = "https://moodle.example/" + "m" * 2100
    error = refused(policy, task_at(long_base))
    assert error.message == "JSON data is invalid: Base URL is too long"
