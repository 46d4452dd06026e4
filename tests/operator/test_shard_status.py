"""A sharded ArchiveJob's status from its Indexed Job's pods, its work volume's state, and
the work volumes housekeeping deletes after the finished-job TTL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from moodle_archive_job.moodle_api import JobStatus
from moodle_archive_operator.archivejob import Phase
from moodle_archive_operator.controller.decide import decide
from moodle_archive_operator.controller.observe import Problem, observe, with_work_volume
from moodle_archive_operator.controller.shard_observe import parse_indexes
from moodle_archive_operator.controller.sweeping import expired_work_volumes
from tests.operator.objects import T0, archivejob, job, pod, stamp
from tests.operator.test_decide import SETTINGS, admitted, cond

NOW = T0 + timedelta(seconds=30)


def indexed_job(aj: dict[str, Any], shards: int = 4, **status: Any) -> dict[str, Any]:
    obj = job(aj, status.pop("finished", None), status.pop("reason", ""))
    obj["spec"] = {"completionMode": "Indexed", "completions": shards, "parallelism": shards}
    obj["status"].update(status)
    if obj["status"]["conditions"]:
        obj["status"]["conditions"][0]["message"] = status.get("message", "")
    return obj


def shard(index: int, phase: str = "Running", second: int = 0, **kw: Any) -> dict[str, Any]:
    p = pod(phase, created=T0 + timedelta(seconds=second), name=f"aj-{index}-{second}", **kw)
    p["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    return p


def test_indexes() -> None:
    assert parse_indexes("0,2-4,7") == [0, 2, 3, 4, 7]
    assert parse_indexes("") == [] and parse_indexes(None) == []


def test_running_while_any_shard_runs_and_a_stuck_shard_is_named() -> None:
    aj = admitted()
    pods = [
        shard(0),
        shard(1),
        shard(2, "Pending", node=None, conditions=[{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu."}]),
        shard(3),
    ]  # fmt: skip
    obs = observe(indexed_job(aj), pods, [])
    assert obs.running_now and obs.scheduled is False and obs.pods == 4
    assert obs.pending_problem == Problem(
        "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu."
    )
    d = decide(aj, obs, True, NOW, SETTINGS)
    assert d.patch["phase"] == "Running"
    assert cond(d.patch, "PodRunning")["status"] == "True"


def test_a_replaced_shard_counts_by_its_newest_pod() -> None:
    aj = admitted()
    pods = [shard(0), shard(1, "Failed", exit_code=137), shard(1, "Pending", second=20)]
    obs = observe(indexed_job(aj, shards=2), pods, [])
    assert obs.running_now and obs.failed_pods == 1
    assert obs.last_failure is not None
    assert obs.last_failure.message.startswith("shard 1 of 2: the runner exited with code 137")


def test_a_failed_index_fails_the_archivejob_with_the_shard_named() -> None:
    aj = admitted()
    pods = [
        shard(0, "Failed", second=1, exit_code=143),  # stopped when the Job failed
        shard(2, "Failed", second=0, term_reason="OOMKilled", exit_code=137),
        shard(2, "Failed", second=5, term_reason="OOMKilled", exit_code=137),
        shard(1, "Failed", second=6, exit_code=143),  # stopped when the Job failed
    ]
    job_obj = indexed_job(
        aj, shards=3, finished="Failed", reason="MaxFailedIndexesExceeded", failedIndexes="2"
    )
    d = decide(aj, observe(job_obj, pods, []), True, NOW, SETTINGS)
    assert d.final is not None
    assert (d.final.phase, d.final.reason) == (Phase.FAILED, "OOMKilled")
    assert d.final.message.startswith("shard 2 of 3: the runner ran out of memory")
    assert d.final.notify is JobStatus.FAILED


def test_the_pod_a_failure_policy_names_decides() -> None:
    aj = admitted()
    pods = [
        shard(1, "Failed", second=0, exit_code=2),
        shard(0, "Failed", second=3, exit_code=143),
    ]
    message = (
        "Container runner for pod jobs/aj-1-0 failed with exit code 2 matching FailJob rule at "
        "index 1"
    )
    job_obj = indexed_job(
        aj, shards=2, finished="Failed", reason="PodFailurePolicy", message=message
    )
    d = decide(aj, observe(job_obj, pods, []), True, NOW, SETTINGS)
    assert d.final is not None and d.final.reason == "InvalidInput"


def test_all_shards_complete() -> None:
    aj = admitted()
    pods = [shard(i, "Succeeded") for i in range(4)]
    job_obj = indexed_job(aj, finished="Complete", reason="CompletionsReached")
    d = decide(aj, observe(job_obj, pods, []), True, NOW, SETTINGS)
    assert d.final is not None and d.final.phase is Phase.SUCCEEDED


def claim(phase: str = "Pending") -> dict[str, Any]:
    return {"spec": {"storageClassName": "local-path"}, "status": {"phase": phase}}


def test_a_pending_work_volume_shows_why() -> None:
    aj = admitted()
    waiting = [pod("Pending", node=None, conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "pod has unbound immediate PersistentVolumeClaims"}])]  # fmt: skip
    obs = observe(job(aj), waiting, [])
    warned = with_work_volume(obs, "aj-work", claim(), ["ProvisioningFailed: no space"])
    assert warned.pending_problem is not None
    assert warned.pending_problem.reason == "WorkVolumePending"
    assert warned.pending_problem.message == (
        "the work volume aj-work (StorageClass local-path) is not bound yet: "
        "ProvisioningFailed: no space; Unschedulable: pod has unbound immediate "
        "PersistentVolumeClaims"
    )
    d = decide(aj, warned, True, NOW, SETTINGS)
    assert "phase" not in d.patch and aj["status"]["phase"] == "Pending"  # stays Pending
    assert cond(d.patch, "PodRunning")["reason"] == "WorkVolumePending"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "WorkVolumePending")]
    late = decide(aj, warned, True, T0 + timedelta(seconds=61), SETTINGS)
    assert late.final is not None and late.final.reason == "WorkVolumePending"
    missing = with_work_volume(observe(job(aj), [], []), "aj-work", None, [])
    assert missing.pending_problem == Problem(
        "WorkVolumePending", "the work volume claim aj-work does not exist"
    )


def test_a_volume_being_provisioned_is_no_problem() -> None:
    aj = admitted()
    obs = observe(job(aj), [pod("Pending", node=None)], [])
    quiet = with_work_volume(obs, "aj-work", claim(), [])
    assert quiet.pending_problem is None and quiet.pending_state == "ProvisioningWorkVolume"
    bound = with_work_volume(obs, "aj-work", claim("Bound"), ["old warning"])
    assert bound == obs
    running = observe(job(aj), [pod("Running")], [])
    assert with_work_volume(running, "aj-work", None, []) == running


def test_work_volumes_expire_after_the_finished_job_ttl() -> None:
    old = archivejob(status={"phase": "Succeeded", "completionTime": stamp(T0)})
    new = archivejob(status={"phase": "Failed", "completionTime": stamp(T0 + timedelta(hours=1))})
    live = archivejob()

    def pvc(aj: dict[str, Any], **meta: Any) -> dict[str, Any]:
        return {"metadata": {"name": f"{aj['metadata']['name']}-work", **meta, "labels": {
            "moodlearchiver.io/archivejob-uid": aj["metadata"]["uid"]}}}  # fmt: skip

    claims = [pvc(old), pvc(new), pvc(live), pvc(old, deletionTimestamp=stamp(T0))]
    now = T0 + timedelta(hours=1, minutes=30)
    expired = expired_work_volumes(claims, [old, new], now, 3600)
    assert expired == [f"{old['metadata']['name']}-work"]
    assert expired_work_volumes(claims, [old, new], now, 0) == [
        f"{old['metadata']['name']}-work", f"{new['metadata']['name']}-work",
    ]  # fmt: skip
