"""Where the local control plane's pinned tools live (see cluster/versions.env)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SRC = REPO_ROOT / "cluster"
VERSIONS_FILE = CLUSTER_SRC / "versions.env"
KWOK_CONFIG_DIR = CLUSTER_SRC / "kwok"

CONTROL_PLANE_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)


class ToolchainMissing(RuntimeError):
    """A binary of the local control plane is not built."""


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse the KEY=VALUE lines of cluster/versions.env."""
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip().strip("\"'")
    return versions


def cache_root() -> Path:
    """$MOODLE_ARCHIVER_CACHE_DIR, by default ~/.cache/moodle-archive-operator."""
    configured = os.environ.get("MOODLE_ARCHIVER_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "moodle-archive-operator"


def tools_bin_dir() -> Path:
    """The directory `make cluster-tools` builds into, keyed by the Kubernetes version."""
    return cache_root() / f"k8s-{read_versions()['KUBERNETES_VERSION']}" / "bin"


def require_tools(
    names: tuple[str, ...] = CONTROL_PLANE_TOOLS, bin_dir: Path | None = None
) -> dict[str, Path]:
    """Paths of the named binaries; ToolchainMissing names the first one that is not built."""
    directory = bin_dir or tools_bin_dir()
    found: dict[str, Path] = {}
    for name in names:
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainMissing(f"{name} not found at {path}: run `make cluster-tools`")
        found[name] = path
    return found
