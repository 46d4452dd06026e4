"""Render the chart with the pinned Helm (make cluster-tools) and pick objects out of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster_env import REPO_ROOT, ToolchainMissing, require_tools

CHART = REPO_ROOT / "charts" / "moodle-archive-operator"
LINT_VALUES = CHART / "ci" / "lint-values.yaml"


def helm_binary() -> Path:
    try:
        return require_tools(("helm",))["helm"]
    except ToolchainMissing as err:
        pytest.fail(f"helm is not built: {err}", pytrace=False)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args[:2])} failed:\n{done.stderr}", pytrace=False)
    return done


def render(
    values: dict[str, Any] | None = None,
    *,
    namespace: str = "moodle-archiver",
    release: str = "moodle-archiver",
    tmp: Path,
) -> list[dict[str, Any]]:
    """The chart's manifests (CRDs included) as dicts."""
    args = [
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        "--values",
        str(LINT_VALUES),
    ]
    if values is not None:
        extra = tmp / "values.json"
        extra.write_text(json.dumps(values))
        args += ["--values", str(extra)]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"{kind} *{name_suffix}: {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}
