"""A job's layout: its work volume (PVC builder, sizing, overrides) and shards (count, the
Indexed Job with its affinity), and the pod that mounts the volume."""

from __future__ import annotations

from typing import Any

import pytest

from moodle_archive_operator.archivejob import ArchiveJobSpec
from moodle_archive_operator.controller.jobspec import build_job
from moodle_archive_operator.controller.layout import (
    SINGLE_POD,
    JobLayout,
    plan_layout,
    recorded_shards,
    shard_count,
)
from moodle_archive_operator.controller.workvolume import (
    WorkVolume,
    build_work_volume_claim,
    format_quantity,
    parse_quantity,
    plan_work_volume,
)
from tests.operator.objects import archivejob
from tests.operator.test_builders import restricted_violations, settings

GIB, MIB = 2**30, 2**20


def with_attempts(count: int, **spec: Any) -> dict[str, Any]:
    aj = archivejob(**spec)
    aj["spec"]["attempts"]["attemptIds"] = list(range(1, count + 1))
    return aj


def volume_of(job: dict[str, Any]) -> dict[str, Any]:
    volumes = job["spec"]["template"]["spec"]["volumes"]
    return next(v for v in volumes if v["name"] == "work")


def env_of(job: dict[str, Any]) -> dict[str, str]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize(
    ("text", "size"),
    [("512Mi", 512 * MIB), ("2Gi", 2 * GIB), ("1.5Gi", 3 * GIB // 2), ("1G", 10**9),
     ("100k", 100_000), ("1000", 1000), ("0.5Ki", 512)],
)  # fmt: skip
def test_quantities(text: str, size: int) -> None:
    assert parse_quantity(text) == size


@pytest.mark.parametrize("text", ["", "1 Gi", "-1Gi", "1gi", "Gi", "1.Gi"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_formatted_sizes_are_whole_gi_or_mi_rounded_up() -> None:
    assert format_quantity(3 * GIB) == "3Gi"
    assert format_quantity(GIB + 1) == "1025Mi"
    assert format_quantity(10**9) == "954Mi"
    assert format_quantity(1) == "1Mi"


def test_no_storage_class_means_an_emptydir_and_one_pod() -> None:
    aj = with_attempts(500)
    s = settings(shards_max=8, shards_attempts_per_shard=10)
    assert plan_layout(aj, s) == SINGLE_POD
    job = build_job(aj, s, plan_layout(aj, s))
    assert volume_of(job) == {"name": "work", "emptyDir": {"sizeLimit": "8Gi"}}
    assert job["spec"]["completions"] == 1 and "completionMode" not in job["spec"]
    assert "--shards" not in job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_work_volume_is_sized_from_the_attempts() -> None:
    s = settings(work_volume_storage_class="local-path")
    layout = plan_layout(with_attempts(200), s)
    assert layout.work_volume is not None
    # 1Gi + 200 x 16Mi = 4224Mi
    assert layout.work_volume.size == "4224Mi"
    assert layout.work_volume.access_mode == "ReadWriteOnce" and layout.shards == 1
    fixed = settings(work_volume_storage_class="fast", work_volume_size="20Gi")
    assert plan_layout(with_attempts(200), fixed).work_volume.size == "20Gi"  # type: ignore[union-attr]


def test_spec_overrides_the_class_and_size_and_may_turn_the_volume_off() -> None:
    s = settings(work_volume_storage_class="local-path", work_volume_size="5Gi")
    own = with_attempts(3, workVolume={"storageClassName": "nfs", "size": "2Gi"})
    volume = plan_work_volume(own, "local-path", "ReadWriteMany", "5Gi", "1Gi", "1Mi")
    assert volume == WorkVolume(f"{own['metadata']['name']}-work", "nfs", "ReadWriteMany", "2Gi")
    off = with_attempts(3, workVolume={"storageClassName": ""})
    assert plan_layout(off, s) == SINGLE_POD
    chosen = with_attempts(3, workVolume={"storageClassName": "nfs"})
    assert plan_layout(chosen, settings()).work_volume.storage_class == "nfs"  # type: ignore[union-attr]
    # the spec's fields are part of the CRD's model
    parsed = ArchiveJobSpec.model_validate(own["spec"])
    assert parsed.work_volume is not None and parsed.work_volume.size == "2Gi"


def test_the_claim_is_owned_by_the_archivejob() -> None:
    aj = with_attempts(10)
    volume = WorkVolume(f"{aj['metadata']['name']}-work", "local-path", "ReadWriteOnce", "2Gi")
    claim = build_work_volume_claim(aj, volume)
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["name"] == volume.claim_name
    [owner] = claim["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "ArchiveJob", aj["metadata"]["uid"], True,
    )  # fmt: skip
    assert claim["metadata"]["labels"]["moodlearchiver.io/archivejob-uid"] == owner["uid"]
    assert claim["spec"] == {
        "storageClassName": "local-path",
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Filesystem",
        "resources": {"requests": {"storage": "2Gi"}},
    }


@pytest.mark.parametrize(
    ("attempts", "max_shards", "per_shard", "expected"),
    [(200, 4, 50, 4), (200, 4, 100, 2), (201, 4, 100, 3), (1000, 4, 10, 4), (1, 4, 50, 1),
     (0, 4, 50, 1), (200, 1, 10, 1)],
)  # fmt: skip
def test_shard_count(attempts: int, max_shards: int, per_shard: int, expected: int) -> None:
    assert shard_count(attempts, max_shards, per_shard) == expected


def test_spec_overrides_shards_and_the_host_cap_bounds_them() -> None:
    s = settings(work_volume_storage_class="local-path", shards_max=2, shards_attempts_per_shard=50)
    assert plan_layout(with_attempts(200), s).shards == 2
    assert plan_layout(with_attempts(200, maxShards=8), s).shards == 4
    assert plan_layout(with_attempts(200, maxShards=8, attemptsPerShard=25), s).shards == 8
    capped = settings(
        work_volume_storage_class="local-path", shards_max=8, shards_attempts_per_shard=10,
        job_attempt_concurrency=4, max_renders_per_moodle_host=12,
    )  # fmt: skip
    assert plan_layout(with_attempts(200), capped).shards == 3  # 3 x 4 renders <= 12
    tiny = capped.model_copy(update={"max_renders_per_moodle_host": 2})
    assert plan_layout(with_attempts(200), tiny).shards == 1


def test_sharded_job_is_one_indexed_job_on_the_volume_s_node() -> None:
    aj = with_attempts(200)
    s = settings(
        work_volume_storage_class="local-path", shards_max=4, shards_attempts_per_shard=50,
        backoff_limit=2, job_attempt_concurrency=3,
    )  # fmt: skip
    layout = plan_layout(aj, s)
    assert layout.shards == 4
    job = build_job(aj, s, layout)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (2, 0)
    assert "backoffLimit" not in spec  # per index instead
    assert spec["podReplacementPolicy"] == "Failed"
    actions = [r["action"] for r in spec["podFailurePolicy"]["rules"]]
    assert actions == ["Ignore", "FailJob"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"][-2:] == ["--shards", "4"]
    assert "--shard-index" not in container["args"]  # from JOB_COMPLETION_INDEX
    assert {"name": "work", "mountPath": "/work"} in container["volumeMounts"]
    assert volume_of(job) == {
        "name": "work",
        "persistentVolumeClaim": {"claimName": f"{aj['metadata']['name']}-work"},
    }
    [term] = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {
        "labelSelector": {"matchLabels": {"batch.kubernetes.io/job-name": job["metadata"]["name"]}},
        "topologyKey": "kubernetes.io/hostname",
    }
    env = env_of(job)
    assert env["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] == "3"
    assert env["QUIZ_ARCHIVER_WORK_DIR"] == "/work"
    assert restricted_violations(pod) == []
    assert layout.status_fields() == {
        "workVolume": f"{aj['metadata']['name']}-work",
        "shardCount": 4,
    }


def test_read_write_many_shards_spread() -> None:
    s = settings(
        work_volume_storage_class="nfs", work_volume_access_mode="ReadWriteMany",
        shards_max=4, shards_attempts_per_shard=50,
    )  # fmt: skip
    job = build_job(with_attempts(200), s, plan_layout(with_attempts(200), s))
    assert job["spec"]["completions"] == 4
    assert "affinity" not in job["spec"]["template"]["spec"]


def test_one_pod_with_a_volume_is_a_plain_job() -> None:
    s = settings(work_volume_storage_class="local-path")
    aj = with_attempts(20)
    job = build_job(aj, s, plan_layout(aj, s))
    assert job["spec"]["completions"] == 1 and job["spec"]["backoffLimit"] == s.backoff_limit
    assert "completionMode" not in job["spec"] and "affinity" not in job["spec"]["template"]["spec"]
    assert "persistentVolumeClaim" in volume_of(job)


def test_concurrency_is_explicit_on_every_pod() -> None:
    assert settings().attempt_concurrency() == 4  # limit "2": 2 per CPU
    assert settings(job_cpu_limit="500m").attempt_concurrency() == 2
    assert settings(job_cpu_limit=None).attempt_concurrency() == 4
    from_env = settings(job_env={"QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY": "6"})
    assert from_env.attempt_concurrency() == 6
    assert env_of(build_job(with_attempts(3), from_env))["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] == "6"
    explicit = settings(
        job_attempt_concurrency=3, job_env={"QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY": "6"}
    )
    env = env_of(build_job(with_attempts(3), explicit))
    assert env["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] == env["MOODLE_ARCHIVER_ATTEMPT_CONCURRENCY"]
    assert env["QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY"] == "3"
    with pytest.raises(ValueError, match="must agree"):
        settings(job_env={"QUIZ_ARCHIVER_ATTEMPT_CONCURRENCY": "2",
                          "MOODLE_ARCHIVER_ATTEMPT_CONCURRENCY": "3"})  # fmt: skip
    with pytest.raises(ValueError):
        settings(work_volume_per_attempt_size="lots")


def test_recorded_shards() -> None:
    assert recorded_shards(archivejob()) == 1
    assert recorded_shards(archivejob(status={"shardCount": 4})) == 4
    assert JobLayout().status_fields() == {"workVolume": None, "shardCount": 1}
