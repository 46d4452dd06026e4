"""Work volumes, shards and the per-Moodle-host cap on the real control plane (real Job, PV
and garbage collectors, real scheduler; KWOK plays the pods): a sharded job is one Indexed
Job whose pods share one PVC on one node, its status follows the indexes, a PVC that cannot
be bound is named, and a busy Moodle host holds back only its own jobs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.operator.conftest import KWOK, RUN_FOREVER, Harness
from tests.support.cluster_fixtures import eventually

pytestmark = pytest.mark.cluster

INDEX = "batch.kubernetes.io/job-completion-index"


@pytest.fixture
def static_class(api_client: client.ApiClient) -> Iterator[str]:
    """A StorageClass without a provisioner and PersistentVolumes of it (KWOK nodes have no
    disks): claims of it bind to a PV at once, as they would to a provisioned one."""
    storage, core = client.StorageV1Api(api_client), client.CoreV1Api(api_client)
    name = f"static-{uuid.uuid4().hex[:6]}"
    storage.create_storage_class({
        "metadata": {"name": name}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate", "reclaimPolicy": "Retain",
    })  # fmt: skip
    pvs = [f"{name}-{i}" for i in range(2)]
    for pv in pvs:
        core.create_persistent_volume({
            "metadata": {"name": pv},
            "spec": {"storageClassName": name, "capacity": {"storage": "20Gi"},
                     "accessModes": ["ReadWriteOnce"], "hostPath": {"path": f"/tmp/{pv}"},
                     "persistentVolumeReclaimPolicy": "Retain"},
        })  # fmt: skip
    try:
        yield name
    finally:
        for pv in pvs:
            try:
                core.delete_persistent_volume(pv)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        storage.delete_storage_class(name)


def submit_for(h: Harness, base_url: str | None = None, attempts: int = 3) -> str:
    aj, _ = h.submit(h.fake_job(attempts=attempts), base_url=base_url)
    return str(aj["metadata"]["name"])


def sharded_operator(h: Harness, storage_class: str, shards: int, per_shard: int,
                     **env: Any) -> None:  # fmt: skip
    h.operator(
        MAO_WORK_VOLUME_STORAGE_CLASS=storage_class,
        MAO_SHARDS_MAX=str(shards),
        MAO_SHARDS_ATTEMPTS_PER_SHARD=str(per_shard),
        **env,
    )


def running_pods(h: Harness, name: str) -> list[client.V1Pod]:
    return [p for p in h.pods(name) if p.status.phase == "Running"]


def test_a_sharded_job_is_one_indexed_job_on_one_node_sharing_its_volume(
    harness: Harness, static_class: str
) -> None:
    h = harness
    sharded_operator(h, static_class, 3, 2, MAO_BACKOFF_LIMIT="0",
                     MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)  # fmt: skip
    name = submit_for(h, attempts=6)
    aj = h.wait_phase(name, ("Running",))
    assert (aj["status"]["shardCount"], aj["status"]["workVolume"]) == (3, f"{name}-work")
    claim = h.core.read_namespaced_persistent_volume_claim(f"{name}-work", h.namespace)
    assert claim.metadata.owner_references[0].uid == aj["metadata"]["uid"]
    assert eventually(lambda: len(running_pods(h, name)) == 3, timeout=60, what="3 shards")
    pods = running_pods(h, name)
    job = h.job(name)
    assert job is not None and job.spec.completion_mode == "Indexed"
    assert (job.spec.completions, job.spec.parallelism, job.spec.backoff_limit_per_index) == (
        3, 3, 0,
    )  # fmt: skip
    by_index = {p.metadata.annotations[INDEX]: p for p in pods}
    assert sorted(by_index) == ["0", "1", "2"]
    assert len({p.spec.node_name for p in pods}) == 1, "ReadWriteOnce: shards on one node"
    for pod in pods:
        [work] = [v for v in pod.spec.volumes if v.name == "work"]
        assert work.persistent_volume_claim.claim_name == f"{name}-work"
        assert pod.spec.containers[0].args[-2:] == ["--shards", "3"]

    # Shard 2 is OOM-killed; with no retries per index the Job fails, naming the shard.
    oom = {f"{KWOK}/outcome": "fail", f"{KWOK}/exit-code": "137", f"{KWOK}/reason": "OOMKilled",
           f"{KWOK}/run-duration": "100ms"}  # fmt: skip
    patch = {"metadata": {"annotations": oom}}
    h.core.patch_namespaced_pod(by_index["2"].metadata.name, h.namespace, patch)
    final = h.wait_phase(name, timeout=90)
    status = final["status"]
    assert (status["phase"], h.condition(final, "Succeeded")["reason"]) == ("Failed", "OOMKilled")
    assert status["message"].startswith("shard 2 of 3: the runner ran out of memory"), status


def test_all_shards_succeeding_complete_the_archivejob(
    harness: Harness, static_class: str
) -> None:
    h = harness
    sharded_operator(h, static_class, 4, 1, MAO_JOB_POD_ANNOTATIONS={f"{KWOK}/run-duration": "1s"})
    name = submit_for(h, attempts=2)
    final = h.wait_phase(name, timeout=90)
    assert final["status"]["phase"] == "Succeeded", final["status"]
    assert final["status"]["shardCount"] == 2
    job = h.job(name)
    assert job is not None and job.status.succeeded == 2


def test_a_work_volume_that_cannot_be_bound_is_named(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_WORK_VOLUME_STORAGE_CLASS="no-such-class",
        MAO_PENDING_TIMEOUT_SEC="8",
        MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER,
    )
    name = submit_for(h)

    def pending_reason() -> dict[str, Any] | None:
        aj = h.archivejob(name) or {}
        conditions = (aj.get("status") or {}).get("conditions") or []
        running = next((c for c in conditions if c["type"] == "PodRunning"), None)
        return running if running and running["reason"] == "WorkVolumePending" else None

    cond = eventually(pending_reason, timeout=30, what="reason WorkVolumePending")
    assert f"the work volume {name}-work (StorageClass no-such-class) is not bound" in (
        cond["message"]
    )
    final = h.wait_phase(name, timeout=60)
    assert (final["status"]["phase"], h.condition(final, "Succeeded")["reason"]) == (
        "Failed", "WorkVolumePending",
    )  # fmt: skip


def admitted_reason(h: Harness, name: str, reason: str) -> dict[str, Any] | None:
    conditions = ((h.archivejob(name) or {}).get("status") or {}).get("conditions") or []
    cond = next((c for c in conditions if c["type"] == "Admitted"), None)
    return cond if cond and cond["reason"] == reason else None


def assert_failed_and_moodle_told(h: Harness, aj: dict[str, Any], reason: str) -> str:
    name = aj["metadata"]["name"]
    final = h.wait_phase(name, timeout=60)
    status = final["status"]
    assert (status["phase"], h.condition(final, "Succeeded")["reason"]) == ("Failed", reason)
    eventually(lambda: h.moodle.job(aj["spec"]["jobId"]).status_name == "FAILED", timeout=30,
               what="Moodle told FAILED")  # fmt: skip
    h.wait_gone("Secret", aj["spec"]["tokenSecretName"])
    told = h.condition(h.archivejob(name), "MoodleNotified")
    assert (told["status"], told["reason"]) == ("True", "Delivered"), told
    assert h.job(name) is None
    return str(status["message"])


def test_a_work_volume_refused_by_a_quota_is_retried_then_fails_with_moodle_told(
    harness: Harness,
) -> None:
    h = harness
    h.core.create_namespaced_resource_quota(h.namespace, {
        "metadata": {"name": "no-volumes"}, "spec": {"hard": {"persistentvolumeclaims": "0"}},
    })  # fmt: skip
    eventually(lambda: (h.core.read_namespaced_resource_quota("no-volumes", h.namespace)
                        .status.hard), timeout=30, what="the quota counted")  # fmt: skip
    h.operator(MAO_WORK_VOLUME_STORAGE_CLASS="standard", MAO_PENDING_TIMEOUT_SEC="12",
               MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)  # fmt: skip
    aj, _ = h.submit()
    name = aj["metadata"]["name"]
    held = eventually(lambda: admitted_reason(h, name, "WorkVolumeCreateFailed"), timeout=30,
                      what="the refused claim shown")  # fmt: skip
    assert f"the work volume {name}-work (StorageClass standard, " in held["message"], held
    assert held["message"].startswith("retrying in ") and "(try 2)" in held["message"]
    assert "exceeded quota: no-volumes" in held["message"], held
    assert h.archivejob(name)["status"]["phase"] == "Queued"
    message = assert_failed_and_moodle_told(h, aj, "WorkVolumeCreateFailed")
    assert "could not be created (tried " in message and "exceeded quota" in message, message


def test_a_work_volume_the_api_finds_invalid_fails_at_once_with_moodle_told(
    harness: Harness,
) -> None:
    h = harness
    h.operator(MAO_WORK_VOLUME_STORAGE_CLASS="Not_A_Class", MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER)
    aj, _ = h.submit()
    message = assert_failed_and_moodle_told(h, aj, "WorkVolumeCreateFailed")
    assert message.startswith(f"the work volume {aj['metadata']['name']}-work (StorageClass "
                              "Not_A_Class"), message  # fmt: skip
    assert "is invalid" in message and "times in" not in message, message


def test_a_busy_moodle_host_holds_back_only_its_own_jobs(harness: Harness) -> None:
    h = harness
    h.operator(
        MAO_MAX_PARALLEL_JOBS="4",
        MAO_JOB_ATTEMPT_CONCURRENCY="3",
        MAO_MAX_RENDERS_PER_MOODLE_HOST="5",
        MAO_JOB_POD_ANNOTATIONS=RUN_FOREVER,
    )
    first = submit_for(h, "https://a.example.org")
    h.wait_phase(first, ("Running",))
    second = submit_for(h, "https://A.example.org/")  # the same site: 3 + 3 > 5
    other = submit_for(h, "https://b.example.org")
    h.wait_phase(other, ("Running",))
    waiting = h.wait_phase(second, ("Queued",))
    admitted = h.condition(waiting, "Admitted")
    assert (admitted["status"], admitted["reason"]) == ("False", "MoodleHostBusy")
    assert "3 of 5 renders in use" in admitted["message"], admitted
    assert any(e.reason == "MoodleHostBusy" for e in h.events(second))
    assert h.job(second) is None

    h.patch_spec(first, {"cancelRequested": True})
    h.wait_phase(first, ("Cancelled",))
    h.wait_phase(second, ("Running",), timeout=60)


def test_a_cancelled_jobs_pods_count_against_its_host_until_they_are_gone(
    harness: Harness,
) -> None:
    """Cancelled, the first job no longer holds a slot, but its pod takes 10 s to stop (a
    runner in its grace period may still be talking to Moodle): the second job of the same
    Moodle waits for the pod to be gone."""
    h = harness
    h.operator(
        MAO_MAX_PARALLEL_JOBS="4",
        MAO_JOB_ATTEMPT_CONCURRENCY="3",
        MAO_MAX_RENDERS_PER_MOODLE_HOST="5",
        MAO_JOB_POD_ANNOTATIONS={**RUN_FOREVER, f"{KWOK}/terminate-duration": "10s"},
    )
    first = submit_for(h, "https://a.example.org")
    h.wait_phase(first, ("Running",))
    h.patch_spec(first, {"cancelRequested": True})
    h.wait_phase(first, ("Cancelled",))
    assert eventually(lambda: [p for p in h.pods(first) if p.metadata.deletion_timestamp],
                      timeout=10, what="the first job's pod stopping")  # fmt: skip
    second = submit_for(h, "https://a.example.org")

    def held_back() -> dict[str, Any] | None:
        conditions = ((h.archivejob(second) or {}).get("status") or {}).get("conditions") or []
        cond = next((c for c in conditions if c["type"] == "Admitted"), None)
        return cond if cond and cond["reason"] == "MoodleHostBusy" else None

    admitted = eventually(held_back, timeout=10, what="the second job held back by its host")
    assert "3 of 5 renders in use" in admitted["message"], admitted
    assert any(p.status.phase == "Running" for p in h.pods(first))  # still stopping
    assert h.job(second) is None
    h.wait_phase(second, ("Running",), timeout=60)
    assert not [p for p in h.pods(first) if p.status.phase == "Running"]
