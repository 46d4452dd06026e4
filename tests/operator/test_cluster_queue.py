"""The queue on the real control plane: 20 ArchiveJobs, 3 slots, FIFO, nothing lost."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ProtocolError

from tests.operator.conftest import KWOK, Harness
from tests.operator.leaks import assert_no_token_leak
from tests.support.cluster_fixtures import eventually

pytestmark = pytest.mark.cluster


class JobWatcher:
    """Follows the namespace's Jobs: admission order and the most ever active at once."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.created: list[str] = []
        self.active: set[str] = set()
        self.max_active = 0
        self.refill_gaps: list[float] = []
        self._last_finish: float | None = None
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            kwargs = {"timeout_seconds": 2}
            if version:
                kwargs["resource_version"] = version  # continue, never re-list
            try:
                for event in self._watch.stream(
                    self.batch.list_namespaced_job, self.namespace, **kwargs
                ):
                    version = event["object"].metadata.resource_version
                    self._seen(event["type"], event["object"])
                    if self._stop.is_set():
                        break
            except ProtocolError:
                continue  # a watch cut off: resume from the last version seen
            except ApiException as exc:
                if exc.status != 410:
                    raise
                version = None  # too old: list again (names already seen keep their order)

    def _seen(self, kind: str, job: client.V1Job) -> None:
        name = job.metadata.name
        finished = any(
            c.type in ("Complete", "Failed") and c.status == "True"
            for c in (job.status.conditions or [])
        )
        now = time.monotonic()
        if name not in self.created:
            self.created.append(name)
            if self._last_finish is not None:
                self.refill_gaps.append(now - self._last_finish)
                self._last_finish = None
        if kind == "DELETED" or finished:
            if name in self.active:
                self._last_finish = now
            self.active.discard(name)
        else:
            self.active.add(name)
        self.max_active = max(self.max_active, len(self.active))

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(10)


def test_twenty_archivejobs_three_slots_fifo_all_finish(harness: Harness) -> None:
    h = harness
    watcher = JobWatcher(h.api, h.namespace)
    try:
        h.operator(
            MAO_MAX_PARALLEL_JOBS="3",
            MAO_JOB_POD_ANNOTATIONS={f"{KWOK}/run-duration": "1s"},
        )
        names = []
        for _ in range(20):
            aj, _moodle_job = h.submit()
            names.append(aj["metadata"]["name"])

        def all_final() -> bool:
            phases = [(h.archivejob(n) or {}).get("status", {}).get("phase") for n in names]
            return all(p == "Succeeded" for p in phases)

        eventually(all_final, timeout=240, interval=1, what="all 20 ArchiveJobs to succeed")
    finally:
        watcher.stop()
    assert watcher.max_active <= 3, watcher.max_active
    assert watcher.max_active == 3  # the slots were used
    assert watcher.created == names  # admitted in creation order, each exactly once
    for name in names:
        aj = h.archivejob(name)
        assert aj is not None
        assert not h.secret_exists(aj["spec"]["tokenSecretName"])
        assert aj["status"]["queuedAt"] <= aj["status"]["completionTime"]
    print(f"refill gaps (s): {sorted(round(g, 3) for g in watcher.refill_gaps)}")
    metrics = h.operators[0].metrics()
    assert 'moodle_archiver_operator_archivejobs{phase="Succeeded"}' in metrics
    assert "moodle_archiver_operator_admission_latency_seconds_count 20.0" in metrics
    assert 'moodle_archiver_operator_run_duration_seconds_count{outcome="Succeeded"} 20.0' in (
        metrics
    )
    assert "moodle_archiver_operator_queue_length 0.0" in metrics
    assert_no_token_leak(h)
