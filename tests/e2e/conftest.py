"""The end-to-end tier: the chart installed on the local control plane with a real node
(kubelet, containerd, runc; images built here) and the fake Moodle as the Moodle site."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakemoodle import FakeMoodle
from tests.support.localcluster import LocalCluster
from tests.support.nodestack import NodeStack, StackOptions

# Attempts in flight per job pod: small, so that a job lasts long enough to be disturbed.
RUNNER_ENV = {"QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY": "2"}


@pytest.fixture(scope="module")
def moodle() -> Iterator[FakeMoodle]:
    with FakeMoodle(report_latency=0.1) as site:
        yield site


@pytest.fixture(scope="module")
def stack(
    cluster: LocalCluster, moodle: FakeMoodle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeStack]:
    options = StackOptions(max_parallel_jobs=2, backoff_limit=1, runner_env=RUNNER_ENV)
    with running_stack(cluster, moodle, tmp_path_factory.mktemp("e2e"), options) as node_stack:
        yield node_stack


@contextmanager
def running_stack(
    cluster: LocalCluster, moodle: FakeMoodle, work: Path, options: StackOptions
) -> Iterator[NodeStack]:
    """The node and a release of its own (a fresh name) for the fake Moodle; stopped after."""
    suffix = uuid.uuid4().hex[:6]
    options = replace(options, release=f"e2e-{suffix}", namespace=f"e2e-{suffix}")
    node_stack = NodeStack(cluster, work, [moodle.base_url], options)
    try:
        node_stack.start()
    except Exception as err:
        pytest.fail(f"the end-to-end stack did not start: {err}", pytrace=False)
    try:
        yield node_stack
    finally:
        node_stack.stop()


@pytest.fixture
def fresh_moodle(moodle: FakeMoodle) -> Iterator[FakeMoodle]:
    """The module's fake Moodle with its faults and latencies reset after the test."""
    try:
        yield moodle
    finally:
        moodle.faults.clear()
        moodle.faults.report_latency = 0.1
