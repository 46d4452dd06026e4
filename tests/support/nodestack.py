"""The whole product on this machine: the images, a real node joined to a local control plane,
the Helm chart installed, and a fake Moodle on loopback as the Moodle site.

Used by `make demo` (scripts/demo.py), the end-to-end tests (tests/e2e/) and
bench/e2e_bench.py. The cluster and the fake Moodle are the caller's; this module adds the
node and the release, and follows ArchiveJobs.

Networking here: there is no kube-proxy and no pod network that reaches anything, so the
gateway, the operator and the job pods use the host network (chart values `*.hostNetwork`),
listen on loopback only, and reach the API server at its loopback address
(`kubernetesApi.host`). Everything else is the chart's defaults.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from moodle_archive_job.request_parsing import detect_protocol, parse_archive_request
from moodle_archive_operator.archivejob import (
    GROUP,
    PLURAL,
    VERSION,
    archivejob_name,
    build_archivejob,
    build_token_secret,
    new_job_id,
    spec_from_task,
)
from tests.support.cluster_env import REPO_ROOT, require_tools
from tests.support.cluster_procs import claim_free_ports
from tests.support.imagebuild import Images, ensure_images
from tests.support.kubeapi import read_or_none
from tests.support.realnode import NODE_LABEL, RealNode, node_tolerations

CHART = REPO_ROOT / "charts" / "moodle-archive-operator"
FINAL_PHASES = ("Succeeded", "Failed", "TimedOut", "Cancelled")


class StackError(RuntimeError):
    """The release could not be installed or did not become ready."""


@dataclass
class StackOptions:
    release: str = "moodle-archiver"
    namespace: str = "moodle-archiver"
    max_parallel_jobs: int = 2
    queue_size: int = 8
    job_cpu_request: str = "250m"
    job_memory_request: str = "512Mi"
    backoff_limit: int = 1
    timeout_seconds: int = 900
    runner_env: dict[str, str] = field(default_factory=dict)
    # More environment of the operator (chart `operator.extraEnv`), e.g. MAO_MOODLE_REDELIVERY_*.
    operator_env: dict[str, str] = field(default_factory=dict)
    # Attempts in flight per job pod (None: the chart's default).
    attempt_concurrency: int | None = None
    # StorageClass of the jobs' work volumes: the node's `local-path` ("" : emptyDir).
    work_volume_class: str = ""
    shards_max: int = 1
    attempts_per_shard: int = 100
    max_renders_per_moodle_host: int = 0


def image_values(ref: str) -> dict[str, str]:
    repository, tag = Images.repo_and_tag(ref)
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


class NodeStack:
    def __init__(
        self,
        cluster: Any,
        work_dir: Path,
        moodle_urls: list[str],
        options: StackOptions | None = None,
        log: Callable[[str], None] = print,
        *,
        keep_running: bool = False,
    ) -> None:
        """keep_running: the node outlives this process (the demo); else it dies with it."""
        self.cluster = cluster
        self.keep_running = keep_running
        self.work_dir = work_dir.resolve()
        self.moodle_urls = moodle_urls
        self.options = options or StackOptions()
        self.log = log
        self.images: Images | None = None
        self.node: RealNode | None = None
        self.ports: dict[str, int] = {}
        self.api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.installed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def jobs_namespace(self) -> str:
        return f"{self.options.namespace}-jobs"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def start(self) -> NodeStack:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            began = time.monotonic()
            self.images = ensure_images(log=self.log)
            self.log(f"stack: images ready ({time.monotonic() - began:.0f} s)")
            began = time.monotonic()
            self.node = RealNode(
                self.cluster,
                self.work_dir / "node",
                self.images,
                die_with_parent=not self.keep_running,
            )
            self.node.start()
            self.log(f"stack: node {self.node.name} Ready ({time.monotonic() - began:.0f} s)")
            began = time.monotonic()
            self.install()
            self.log(
                f"stack: release {self.options.release} ready ({time.monotonic() - began:.0f} s)"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.installed:
            self.helm(
                "uninstall",
                self.options.release,
                "--namespace",
                self.options.namespace,
                "--wait",
                "--timeout",
                "120s",
                check=False,
            )
            self.installed = False
        if self.node is not None:
            self.node.stop()

    def values(self) -> dict[str, Any]:
        assert self.images is not None
        opts = self.options
        api_port = int(self.cluster.server.rsplit(":", 1)[1])
        placement = {
            "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": node_tolerations(),
            "hostNetwork": True,
        }
        return {
            "image": image_values(self.images.operator),
            "maxParallelJobs": opts.max_parallel_jobs,
            "logLevel": "INFO",
            "kubernetesApi": {"host": "127.0.0.1", "port": api_port},
            "gateway": {
                **placement,
                "allowedMoodleUrls": self.moodle_urls,
                "host": "127.0.0.1",
                "port": self.ports["gateway"],
                "queueSize": opts.queue_size,
            },
            "operator": {
                **placement,
                "livenessPort": self.ports["liveness"],
                "metricsPort": self.ports["metrics"],
                "extraEnv": [{"name": k, "value": v} for k, v in opts.operator_env.items()],
            },
            "jobs": {
                **placement,
                "image": image_values(self.images.job),
                "timeoutSeconds": opts.timeout_seconds,
                "backoffLimit": opts.backoff_limit,
                "resources": {
                    "requests": {"cpu": opts.job_cpu_request, "memory": opts.job_memory_request},
                    "limits": {"cpu": "2", "memory": "2Gi"},
                },
                "env": {"QUIZ_ARCHIVER_STATUS_REPORTING_INTERVAL_SEC": "1", **opts.runner_env},
                "attemptConcurrency": opts.attempt_concurrency,
                "workVolume": {"storageClassName": opts.work_volume_class},
                "shards": {"max": opts.shards_max, "attemptsPerShard": opts.attempts_per_shard},
            },
            "admission": {"maxRendersPerMoodleHost": opts.max_renders_per_moodle_host},
        }

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        helm = require_tools(("helm",))["helm"]
        argv = [str(helm), "--kubeconfig", str(self.cluster.kubeconfig), *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
        if check and done.returncode != 0:
            raise StackError(f"helm {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def install(self) -> None:
        gateway, liveness, metrics = claim_free_ports(3, self.work_dir)
        self.ports = {"gateway": gateway, "liveness": liveness, "metrics": metrics}
        values = self.work_dir / "values.json"
        values.write_text(json.dumps(self.values(), indent=2))
        self.installed = True
        try:
            out = self.helm(
                "install",
                self.options.release,
                str(CHART),
                "--namespace",
                self.options.namespace,
                "--create-namespace",
                "--values",
                str(values),
                "--wait",
                "--timeout",
                "240s",
            )
        except StackError as err:
            raise StackError(f"{err}\n{self.diagnose()}") from None
        (self.work_dir / "NOTES.txt").write_text(out)

    def diagnose(self) -> str:
        """Pods of the release and jobs namespaces with their states, and the node's logs."""
        lines = []
        for ns in (self.options.namespace, self.jobs_namespace):
            with _quiet():
                for pod in self.core.list_namespaced_pod(ns).items:
                    states = [
                        f"{c.name}: {c.state.to_dict() if c.state else None}"
                        for c in pod.status.container_statuses or []
                    ]
                    lines.append(f"{ns}/{pod.metadata.name} {pod.status.phase} {states}")
                    if self.node is not None:
                        lines.append(self.node.pod_log(ns, pod.metadata.name)[-3000:])
        return "\n".join(lines)

    # ------------------------------------------------------------------ ArchiveJobs

    def archivejob(self, job_id: str) -> dict[str, Any] | None:
        return read_or_none(lambda: self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.jobs_namespace, PLURAL, archivejob_name(job_id)
        ))  # fmt: skip

    def wait_final(
        self,
        job_id: str,
        timeout: float = 600,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            obj = self.archivejob(job_id)
            status = (obj or {}).get("status") or {}
            if on_status is not None and obj is not None:
                on_status(status)
            if status.get("phase") in FINAL_PHASES:
                return obj  # type: ignore[return-value]
            if time.monotonic() > deadline:
                raise StackError(
                    f"ArchiveJob of job {job_id} not final after {timeout:.0f} s: "
                    f"{json.dumps(status)[:800]}\n{self.diagnose()}"
                )
            time.sleep(0.5)

    def create_archivejob(self, moodle_job: Any, moodle: Any, **spec: Any) -> str:
        """An ArchiveJob and its token Secret made as the gateway makes them, with `spec`
        overrides (e.g. `maxShards`) the gateway never sets; Moodle then registers the job
        id. Returns the job id."""
        body = moodle_job.request_body
        parsed = parse_archive_request(body, detect_protocol(body))
        job_id = new_job_id()
        task_spec = spec_from_task(parsed.task, job_id, self.options.timeout_seconds)
        manifest = build_archivejob(task_spec, self.jobs_namespace)
        manifest["spec"].update(spec)
        created = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.jobs_namespace, PLURAL, manifest
        )
        secret = build_token_secret(created, parsed.token, self.jobs_namespace)
        self.core.create_namespaced_secret(self.jobs_namespace, secret)
        moodle.register_job(moodle_job, job_id)
        return job_id

    def secret_exists(self, name: str) -> bool:
        """Whether a Secret of the jobs namespace (a job's token Secret) exists."""
        secret = read_or_none(lambda: self.core.read_namespaced_secret(name, self.jobs_namespace))
        return secret is not None

    def job_pods(self, job_id: str) -> list[client.V1Pod]:
        selector = f"{GROUP}/job-id={job_id}"
        return self.core.list_namespaced_pod(self.jobs_namespace, label_selector=selector).items

    def kubectl(self, *args: str) -> str:
        kubectl = require_tools(("kubectl",))["kubectl"]
        done = subprocess.run(
            [str(kubectl), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return done.stdout + done.stderr


class _quiet:
    """Ignore API errors while collecting diagnostics."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> bool:
        return exc_type is not None and issubclass(exc_type, ApiException)


def progress_line(status: dict[str, Any]) -> str:
    """One line for a human: phase, a bar, attempts done/total, the message."""
    progress = int(status.get("progress") or 0)
    bar = "#" * (progress // 5) + "." * (20 - progress // 5)
    done, total = status.get("attemptsDone"), status.get("attemptsTotal")
    counts = f"{done or 0}/{total} attempts" if total is not None else ""
    phase, message = status.get("phase", "Pending"), status.get("message", "")
    return f"{phase:<17} [{bar}] {progress:>3}% {counts}  {message}"
