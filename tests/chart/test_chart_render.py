"""The Helm chart without a cluster: lint, the CRD copy, what it renders, and that every
environment variable it sets is a setting the gateway or the operator reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from moodle_archive_operator.controller.settings import OperatorSettings
from moodle_archive_operator.gateway.settings import GatewaySettings
from tests.chart.helm import CHART, LINT_VALUES, container_env, find, helm, render
from tests.support.cluster_env import REPO_ROOT


def accepted_env_names(settings: type[Any]) -> set[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(c).upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        names.add(f"{prefix}{field_name}".upper())
    return names


def test_chart_crd_is_the_crd() -> None:
    chart_copy = CHART / "crds" / "archivejobs.moodlearchiver.io.yaml"
    source = REPO_ROOT / "crds" / "archivejobs.moodlearchiver.io.yaml"
    assert chart_copy.read_bytes() == source.read_bytes(), (
        "the chart's CRD differs from crds/: copy crds/archivejobs.moodlearchiver.io.yaml to "
        f"{chart_copy.relative_to(REPO_ROOT)}"
    )


def test_helm_lint_is_clean() -> None:
    done = helm("lint", str(CHART), "--strict", "--values", str(LINT_VALUES), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ERROR]" not in done.stdout and "[WARNING]" not in done.stdout, done.stdout


def test_default_render(tmp_path: Path) -> None:
    docs = render(tmp=tmp_path)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == [
        "ClusterRole/moodle-archiver-archivejobs-edit",
        "ClusterRole/moodle-archiver-archivejobs-view",
        "CustomResourceDefinition/archivejobs.moodlearchiver.io",
        "Deployment/moodle-archiver-gateway",
        "Deployment/moodle-archiver-operator",
        "Namespace/moodle-archiver-jobs",
        "NetworkPolicy/moodle-archiver-job-pods",
        "Role/moodle-archiver-gateway",
        "Role/moodle-archiver-operator",
        "RoleBinding/moodle-archiver-gateway",
        "RoleBinding/moodle-archiver-operator",
        "Service/moodle-archiver-gateway",
        "ServiceAccount/moodle-archiver-gateway",
        "ServiceAccount/moodle-archiver-operator",
    ]
    labels = find(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    operator = find(docs, "Deployment", "-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    for deployment in (operator, find(docs, "Deployment", "-gateway")):
        pod = deployment["spec"]["template"]["spec"]
        assert "hostNetwork" not in pod
        assert pod["securityContext"]["runAsNonRoot"] is True
        context = pod["containers"][0]["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["allowPrivilegeEscalation"] is False
    policy = find(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    assert policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "moodle-archiver-operator",
        "app.kubernetes.io/component": "archive-runner",
    }


def test_gateway_env_is_gateway_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "gateway": {
            "allowedMoodleUrls": ["https://a.example.org", "https://b.example.org/m"],
            "pathPrefix": "/s3cret/",
            "queueSize": 3,
        },
        "jobs": {"timeoutSeconds": 1800},
        "maxParallelJobs": 2,
    }
    env = container_env(find(render(values, tmp=tmp_path), "Deployment", "-gateway"))
    unknown = {n for n in env if n.startswith(("MOODLE_", "QUIZ_"))} - accepted_env_names(
        GatewaySettings
    )
    assert not unknown, f"the chart sets variables the gateway does not read: {unknown}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    sites = [(s.host, s.path) for s in settings.allowed_moodle_urls]
    assert sites == [("a.example.org", ""), ("b.example.org", "/m")]
    assert settings.path_prefix == "/s3cret"
    assert (settings.queue_size, settings.max_parallel_jobs, settings.job_timeout_sec) == (
        3,
        2,
        1800,
    )
    assert settings.jobs_namespace == "moodle-archiver-jobs"
    settings.ensure_moodle_policy()


def test_operator_env_is_operator_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "jobs": {
            "image": {"repository": "registry.example.org/job", "tag": "1.2.3"},
            "imagePullSecrets": [{"name": "pull"}],
            "env": {"QUIZ_ARCHIVER_PDFA_CONVERSION": "false"},
            "nodeSelector": {"pool": "archive"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {
                "requests": {"cpu": "1", "memory": "1Gi"},
                "limits": {"cpu": None, "memory": "3Gi"},
            },
            "hostNetwork": True,
            "history": {"maxCount": 5, "maxAgeSeconds": 60},
            "attemptConcurrency": 3,
            "workVolume": {"storageClassName": "nfs", "accessMode": "ReadWriteMany",
                           "perAttemptSize": "8Mi"},
            "shards": {"max": 4, "attemptsPerShard": 50},
        },
        "admission": {"maxRendersPerMoodleHost": 12},
        "kubernetesApi": {"host": "127.0.0.1", "port": 6443},
        "operator": {"metricsPort": 9191,
                     "moodleRedelivery": {"baseSeconds": 2.5, "maxSeconds": 600}},
    }
    docs = render(values, tmp=tmp_path)
    env = container_env(find(docs, "Deployment", "-operator"))
    unknown = {n for n in env if n.startswith(("MOODLE_", "QUIZ_"))} - accepted_env_names(
        OperatorSettings
    )
    assert not unknown, f"the chart sets variables the operator does not read: {unknown}"
    assert (
        env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "6443"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = OperatorSettings()
    assert s.job_image == "registry.example.org/job:1.2.3"
    assert s.job_image_pull_secrets == ["pull"]
    assert s.job_env == {
        "MAO_KUBE_SERVER": "https://127.0.0.1:6443",
        "QUIZ_ARCHIVER_PDFA_CONVERSION": "false",
    }
    assert s.job_node_selector == {"pool": "archive"} and s.job_tolerations[0]["key"] == "k"
    assert (s.job_cpu_request, s.job_memory_request, s.job_memory_limit) == ("1", "1Gi", "3Gi")
    assert not s.job_cpu_limit  # `cpu: null` removes the default limit: the pod gets none
    assert s.job_host_network is True and s.metrics_port == 9191
    assert (s.history_max_count, s.history_max_age_sec) == (5, 60)
    assert (s.job_run_as_user, s.job_fs_group) == (1000, 1000)
    assert s.attempt_concurrency() == 3 and s.max_renders_per_moodle_host == 12
    assert (s.work_volume_storage_class, s.work_volume_access_mode) == ("nfs", "ReadWriteMany")
    assert (s.work_volume_size, s.work_volume_base_size, s.work_volume_per_attempt_size) == (
        None, "1Gi", "8Mi",
    )  # fmt: skip
    assert (s.shards_max, s.shards_attempts_per_shard) == (4, 50)
    assert (s.moodle_redelivery_base_sec, s.moodle_redelivery_max_sec) == (2.5, 600)
    labels = find(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # host network
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ({}, {}),
        ({"pdfaMode": "lenient"}, {"MOODLE_ARCHIVER_PDFA_MODE": "lenient"}),
        # A value in jobs.env wins (two names disagreeing would stop the runner).
        ({"pdfaMode": "lenient", "env": {"QUIZ_ARCHIVER_PDFA_MODE": "strict"}},
         {"QUIZ_ARCHIVER_PDFA_MODE": "strict"}),
    ],
)
def test_pdfa_mode_reaches_the_job_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: dict[str, Any], expected: dict[str, str]
) -> None:
    docs = render({"jobs": jobs}, tmp=tmp_path)
    for name, value in container_env(find(docs, "Deployment", "-operator")).items():
        monkeypatch.setenv(name, value)
    job_env = OperatorSettings().job_env
    assert {k: v for k, v in job_env.items() if k.endswith("PDFA_MODE")} == expected


def test_without_allow_list_the_install_fails_with_the_reason() -> None:
    done = helm("template", "x", str(CHART), check=False)
    assert done.returncode != 0
    assert "gateway.allowedMoodleUrls is empty" in done.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gateway.allowedMoodleUrl=https://typo.example.org", "additional properties"),
        ("maxParallelJobs=0", "maxParallelJobs"),
        ("jobs.image.pullPolicy=Sometimes", "pullPolicy"),
        ("jobs.workVolume.accessMode=ReadOnlyMany", "accessMode"),
        ("jobs.workVolume.size=lots", "size"),
        ("jobs.shards.max=0", "max"),
        ("admission.maxRendersPerMoodleHost=-1", "maxRendersPerMoodleHost"),
        ("jobs.pdfaMode=relaxed", "pdfamode"),
        ("operator.moodleRedelivery.baseSeconds=0", "baseSeconds"),
    ],
)
def test_schema_refuses_bad_values(setting: str, message: str) -> None:
    done = helm(
        "template", "x", str(CHART), "--values", str(LINT_VALUES), "--set", setting, check=False
    )
    assert done.returncode != 0
    assert message in done.stderr.lower() or message in done.stderr, done.stderr
