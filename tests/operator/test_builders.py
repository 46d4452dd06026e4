"""The per-job objects: names, owner references, least privilege, the restricted pod."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from moodle_archive_job.task import ArchiveTask
from moodle_archive_operator.archivejob import ArchiveJobSpec, task_from_spec
from moodle_archive_operator.controller.children import (
    build_role,
    build_role_binding,
    build_service_account,
    build_task_config_map,
)
from moodle_archive_operator.controller.jobspec import build_job
from moodle_archive_operator.controller.naming import child_name, owner_name
from moodle_archive_operator.controller.settings import OperatorSettings
from tests.operator.objects import archivejob

# Volume types the restricted Pod Security Standard allows (check_restrictedVolumes.go).
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def settings(**values: Any) -> OperatorSettings:
    return OperatorSettings(_env_file=None, **values)  # type: ignore[call-arg]


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """The restricted profile's checks (pod-security-admission policy/), as plain assertions."""
    problems = []
    pod_sc = pod_spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            problems.append(key)
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    for c in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append("privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append("capabilities.drop")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append("capabilities.add")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append("runAsNonRoot")
        if (sc.get("runAsUser") or pod_sc.get("runAsUser")) == 0:
            problems.append("runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append("seccompProfile")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append("hostPort")
    return problems


def test_every_child_has_the_same_deterministic_name_and_is_owned_by_the_archivejob() -> None:
    aj = archivejob()
    objs = [
        build_service_account(aj), build_role(aj), build_role_binding(aj),
        build_task_config_map(aj), build_job(aj, settings()),
    ]  # fmt: skip
    name = aj["metadata"]["name"]
    for obj in objs:
        meta = obj["metadata"]
        assert meta["name"] == child_name(name) == name
        assert meta["namespace"] == "jobs"
        [ref] = meta["ownerReferences"]
        assert ref["kind"] == "ArchiveJob" and ref["uid"] == aj["metadata"]["uid"]
        assert ref["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "moodle-archiver-operator"
        assert meta["labels"]["moodlearchiver.io/archivejob-uid"] == aj["metadata"]["uid"]
        assert meta["labels"]["moodlearchiver.io/job-id"] == aj["spec"]["jobId"]
        assert owner_name(obj) == name
    assert build_job(aj, settings()) == build_job(aj, settings())


def test_long_names_are_shortened_deterministically_within_label_limits() -> None:
    long = "archive-" + "x" * 100
    short = child_name(long)
    assert len(short) <= 63 and short == child_name(long) and short != child_name(long + "y")
    assert child_name("archive-short") == "archive-short"


def test_role_allows_exactly_get_and_patch_of_its_own_archivejob_status() -> None:
    aj = archivejob()
    role = build_role(aj)
    assert role["rules"] == [
        {
            "apiGroups": ["moodlearchiver.io"],
            "resources": ["archivejobs/status"],
            "resourceNames": [aj["metadata"]["name"]],
            "verbs": ["get", "patch"],
        }
    ]
    binding = build_role_binding(aj)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": aj["metadata"]["name"]
    }  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": aj["metadata"]["name"], "namespace": "jobs"}
    ]
    assert build_service_account(aj)["automountServiceAccountToken"] is False


def test_config_map_holds_the_task_of_the_spec_and_no_token() -> None:
    aj = archivejob()
    cm = build_task_config_map(aj)
    assert cm["immutable"] is True
    task = ArchiveTask.model_validate_json(cm["data"]["task.json"])
    assert task == task_from_spec(ArchiveJobSpec.model_validate(aj["spec"]))
    assert "token" not in cm["data"]["task.json"].lower()


def test_job_pod_meets_the_restricted_pod_security_standard_and_more() -> None:
    aj = archivejob()
    job = build_job(aj, settings())
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsUser"] != 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"]
    assert volumes[mounts["/work"]["name"]]["emptyDir"]["sizeLimit"]
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    token = mounts["/var/run/secrets/moodle-archiver"]
    assert token["readOnly"] is True
    assert volumes[token["name"]]["secret"]["secretName"] == aj["spec"]["tokenSecretName"]
    assert volumes[token["name"]]["secret"]["defaultMode"] == 0o440
    assert mounts["/etc/moodle-archiver/task"]["readOnly"] is True
    api = volumes[mounts["/var/run/secrets/kubernetes.io/serviceaccount"]["name"]]
    assert "serviceAccountToken" in api["projected"]["sources"][0]


def test_job_spec_timeouts_retries_and_cleanup_come_from_task_and_settings() -> None:
    aj = archivejob(timeout=900)
    job = build_job(aj, settings(backoff_limit=2, ttl_seconds_after_finished=120,
                                 job_memory_limit="3Gi", job_cpu_request="250m"))  # fmt: skip
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["backoffLimit"] == 2
    assert spec["ttlSecondsAfterFinished"] == 120
    assert spec["podReplacementPolicy"] == "Failed"
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in rules
    fail = next(r for r in rules if r["action"] == "FailJob")
    assert fail["onExitCodes"] == {"containerName": "runner", "operator": "In", "values": [1, 2, 3]}
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "3Gi"
    assert container["resources"]["requests"]["cpu"] == "250m"
    env = {e["name"]: e["value"] for e in container["env"]}
    # The runner stops itself before the Job's deadline, to tell Moodle TIMEOUT in time.
    assert env["QUIZ_ARCHIVER_REQUEST_TIMEOUT_SEC"] == "840"
    assert env["MAO_ARCHIVEJOB_NAME"] == aj["metadata"]["name"]
    assert env["MAO_ARCHIVEJOB_NAMESPACE"] == "jobs"
    assert container["args"][:2] == ["run-job", "--task"]
    assert aj["spec"]["jobId"] in container["args"]


def test_runner_margin_is_at_most_a_fifth_of_short_timeouts() -> None:
    s = settings(runner_deadline_margin_sec=60)
    assert s.runner_timeout_sec(3600) == 3540
    assert s.runner_timeout_sec(10) == 8
    assert s.runner_timeout_sec(1) == 1


def test_extra_env_annotations_scheduling_and_host_network() -> None:
    s = settings(
        job_env={"QUIZ_ARCHIVER_DEMO_MODE": "true"},
        job_pod_annotations={"example.org/a": "b"},
        job_node_selector={"pool": "archive"},
        job_tolerations=[{"key": "archive", "operator": "Exists"}],
        job_host_network=True,
    )
    template = build_job(archivejob(), s)["spec"]["template"]
    pod = template["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["QUIZ_ARCHIVER_DEMO_MODE"] == "true"
    assert template["metadata"]["annotations"]["example.org/a"] == "b"
    assert pod["nodeSelector"] == {"pool": "archive"}
    assert pod["tolerations"] == [{"key": "archive", "operator": "Exists"}]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert "hostNetwork" not in build_job(archivejob(), settings())["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", ["MAO_ARCHIVEJOB_NAME", "bad name", "HOME"])
def test_job_env_cannot_override_what_the_operator_sets(name: str) -> None:
    with pytest.raises(ValidationError):
        settings(job_env={name: "x"})


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAO_MAX_PARALLEL_JOBS", "3")
    monkeypatch.setenv("MAO_JOB_ENV", json.dumps({"QUIZ_ARCHIVER_LOG_LEVEL": "DEBUG"}))
    monkeypatch.setenv("MAO_JOB_HOST_NETWORK", "true")
    monkeypatch.setenv("MAO_PENDING_TIMEOUT_SEC", "30")
    s = OperatorSettings()
    assert s.max_parallel_jobs == 3
    assert s.job_env == {"QUIZ_ARCHIVER_LOG_LEVEL": "DEBUG"}
    assert s.job_host_network is True
    assert s.pending_timeout_sec == 30
