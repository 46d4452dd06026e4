"""The work volume of an ArchiveJob: a PersistentVolumeClaim owned by it, mounted at /work.

With a StorageClass configured (Helm `jobs.workVolume.storageClassName`, or the ArchiveJob's
`spec.workVolume`), the runner's per-attempt checkpoints outlive a pod, so a replacement pod
resumes instead of starting over, and shards of one job share the volume. Without one, /work
is an emptyDir that dies with the pod (no resume, a single pod). Pure: nothing here talks to
the API server.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from .children import child_metadata
from .naming import child_name

AccessMode = Literal["ReadWriteOnce", "ReadWriteMany"]

_QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGTPE]i?|k)?$")
_FACTORS = {
    None: 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_MI = 2**20


def parse_quantity(value: str | int) -> int:
    """Bytes of a Kubernetes storage quantity such as `512Mi`, `2Gi`, `1.5G` or `1000`."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    match = _QUANTITY_RE.match(value.strip())
    if not match:
        raise ValueError(f"not a storage quantity: {value!r}")
    number, suffix = match.groups()
    return math.ceil(float(number) * _FACTORS[suffix])


def format_quantity(size: int) -> str:
    """A quantity the API server keeps as is: whole Gi where exact, else Mi rounded up."""
    if size > 0 and size % 2**30 == 0:
        return f"{size // 2**30}Gi"
    return f"{max(1, math.ceil(size / _MI))}Mi"


def claim_name(archivejob_name: str) -> str:
    return f"{child_name(archivejob_name)}-work"


@dataclass(frozen=True)
class WorkVolume:
    claim_name: str
    storage_class: str
    access_mode: AccessMode
    size: str

    @property
    def shared(self) -> bool:
        """Pods on several nodes may mount it at once."""
        return self.access_mode == "ReadWriteMany"


def volume_size(attempts: int, base: str, per_attempt: str) -> str:
    return format_quantity(parse_quantity(base) + attempts * parse_quantity(per_attempt))


def attempt_count(archivejob: dict[str, Any]) -> int:
    attempts = (archivejob.get("spec") or {}).get("attempts") or {}
    ids = attempts.get("attemptIds")
    return len(ids) if isinstance(ids, list) else 0


def plan_work_volume(
    archivejob: dict[str, Any],
    storage_class: str | None,
    access_mode: AccessMode,
    size: str | None,
    base_size: str,
    per_attempt_size: str,
) -> WorkVolume | None:
    """The work volume this ArchiveJob gets, or None for an emptyDir.

    `spec.workVolume.storageClassName` overrides the configured class (`""` turns the volume
    off for this job); `spec.workVolume.size` overrides the configured or computed size.
    """
    override = (archivejob.get("spec") or {}).get("workVolume") or {}
    storage_class = override.get("storageClassName", storage_class)
    if not storage_class:
        return None
    chosen = override.get("size") or size
    if chosen:
        final_size = format_quantity(parse_quantity(chosen))
    else:
        final_size = volume_size(attempt_count(archivejob), base_size, per_attempt_size)
    return WorkVolume(
        claim_name=claim_name(archivejob["metadata"]["name"]),
        storage_class=str(storage_class),
        access_mode=access_mode,
        size=final_size,
    )


def build_work_volume_claim(archivejob: dict[str, Any], volume: WorkVolume) -> dict[str, Any]:
    """The PVC, owned by the ArchiveJob (garbage-collected with it)."""
    meta = child_metadata(archivejob)
    meta["name"] = volume.claim_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": {
            "storageClassName": volume.storage_class,
            "accessModes": [volume.access_mode],
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": volume.size}},
        },
    }


def work_volume_source(volume: WorkVolume | None, empty_dir_size_limit: str) -> dict[str, Any]:
    """The pod's `work` volume: the claim, or an emptyDir of the given size limit."""
    if volume is None:
        return {"name": "work", "emptyDir": {"sizeLimit": empty_dir_size_limit}}
    return {"name": "work", "persistentVolumeClaim": {"claimName": volume.claim_name}}
