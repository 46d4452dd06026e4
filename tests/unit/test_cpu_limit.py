"""The runner sizes its concurrency from the CPUs it may use, a pod's CPU limit included."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodle_archive_job import settings
from moodle_archive_job.settings import cgroup_cpu_limit, visible_cpus


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000", 1)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    write(tmp_path, "cpu.max", cpu_max)
    assert cgroup_cpu_limit(tmp_path) == expected


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(("quota", "expected"), [("-1", None), ("300000", 3), ("25000", 1)])
def test_cgroup_v1_quota(
    tmp_path: Path, controller: str, quota: str, expected: int | None
) -> None:
    write(tmp_path, f"{controller}/cpu.cfs_quota_us", quota + "\n")
    write(tmp_path, f"{controller}/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path) == expected


def test_no_or_unreadable_cgroup_files_mean_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None
    write(tmp_path, "cpu.max", "garbage")
    assert cgroup_cpu_limit(tmp_path) is None


def test_the_limit_caps_the_cpus_of_the_affinity_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings.os, "sched_getaffinity", lambda _pid: set(range(16)))
    write(tmp_path, "cpu.max", "200000 100000")
    assert visible_cpus(tmp_path) == 2
    write(tmp_path, "cpu.max", "max 100000")
    assert visible_cpus(tmp_path) == 16
