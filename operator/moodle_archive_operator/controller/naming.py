"""Deterministic names and labels of the objects the operator makes for one ArchiveJob.

All per-job objects (ServiceAccount, Role, RoleBinding, ConfigMap, Job) share one
name derived from the ArchiveJob's, so a restarted operator finds what it made
(a second create answers 409) instead of making it twice.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..archivejob import (
    ANNOTATION_ARCHIVEJOB,
    APP_NAME,
    GROUP,
    LABEL_ARCHIVEJOB_UID,
    LABEL_JOB_ID,
    PART_OF,
)

MANAGED_BY = "moodle-archiver-operator"
COMPONENT = "archive-runner"
CONTAINER_NAME = "runner"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
# LABEL_ARCHIVEJOB_UID and ANNOTATION_ARCHIVEJOB (names can be longer than a label value may
# be: the owning ArchiveJob's name) come from the ArchiveJob module, shared with token Secrets.

# Selects every object this operator makes for ArchiveJobs (and the pods of its Jobs).
CHILD_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT}"

# A Job's name is a label value on its pods (job-name): at most 63 characters.
_MAX_CHILD_NAME = 63


def child_name(archivejob_name: str) -> str:
    """Name of the per-job objects: the ArchiveJob's own, shortened with a hash if too long."""
    if len(archivejob_name) <= _MAX_CHILD_NAME:
        return archivejob_name
    digest = hashlib.sha256(archivejob_name.encode()).hexdigest()[:10]
    return f"{archivejob_name[: _MAX_CHILD_NAME - 11].rstrip('-.')}-{digest}"


def child_labels(archivejob: dict[str, Any]) -> dict[str, str]:
    meta = archivejob["metadata"]
    labels = {
        "app.kubernetes.io/name": APP_NAME,
        LABEL_COMPONENT: COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_ARCHIVEJOB_UID: str(meta["uid"]),
    }
    job_id = archivejob.get("spec", {}).get("jobId")
    if job_id:
        labels[LABEL_JOB_ID] = str(job_id)
    return labels


def child_annotations(archivejob: dict[str, Any]) -> dict[str, str]:
    return {ANNOTATION_ARCHIVEJOB: str(archivejob["metadata"]["name"])}


def owner_name(child: dict[str, Any]) -> str | None:
    """The ArchiveJob a child object (or a pod of its Job) belongs to, if it says so."""
    meta = child.get("metadata") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION_ARCHIVEJOB)
    if name:
        return str(name)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "ArchiveJob" and ref.get("apiVersion", "").startswith(GROUP):
            return str(ref.get("name"))
    return None
