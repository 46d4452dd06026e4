"""The pods of an Indexed Job (a sharded ArchiveJob), read index by index.

A sharded job has one live pod per index at a time and may have failed pods of several
indexes. These helpers pick the pods that matter now (the newest live pod of each index)
and the failure that decided the Job's end, named by its shard, so that `observe` can
summarise many pods as it does one. Pure functions over API objects (plain dicts).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .observe import Termination

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
# The Job controller names the pod in a pod failure policy's condition message.
_POD_IN_MESSAGE = re.compile(r"\bpod [a-z0-9.-]+/([a-z0-9.-]+)")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def is_indexed(job: dict[str, Any]) -> bool:
    return _dict(job.get("spec")).get("completionMode") == "Indexed"


def shard_total(job: dict[str, Any]) -> int:
    completions = _dict(job.get("spec")).get("completions")
    return completions if isinstance(completions, int) and completions > 0 else 1


def pod_index(pod: dict[str, Any]) -> int | None:
    meta = _dict(pod.get("metadata"))
    for source in (_dict(meta.get("annotations")), _dict(meta.get("labels"))):
        value = source.get(INDEX_KEY)
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def current_pods(live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest of the (oldest-first) live pods of each index, by index."""
    newest: dict[int, dict[str, Any]] = {}
    for pod in live:
        index = pod_index(pod)
        newest[-1 if index is None else index] = pod
    return [newest[i] for i in sorted(newest)]


def parse_indexes(text: Any) -> list[int]:
    """`status.failedIndexes` / `completedIndexes` ("0,2-4") as a list of indexes."""
    found: list[int] = []
    for part in str(text or "").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            found.extend(range(int(first), int(last or first) + 1))
    return found


def labelled(termination: Termination, pod: dict[str, Any], total: int) -> Termination:
    """The failure, its message prefixed with the shard it happened in."""
    index = pod_index(pod)
    if index is None:
        return termination
    return replace(termination, message=f"shard {index} of {total}: {termination.message}")


def decisive_pod(
    job: dict[str, Any], failed: list[dict[str, Any]], job_message: str
) -> dict[str, Any] | None:
    """Of the failed pods (oldest first), the one whose failure ended the Job: the pod the
    Job's failure message names, else the newest failed pod of a failed index, else the
    newest failed pod. (When a Job fails, its other pods are stopped and fail too.)"""
    if not failed:
        return None
    named = _POD_IN_MESSAGE.search(job_message)
    if named:
        for pod in failed:
            if _dict(pod.get("metadata")).get("name") == named.group(1):
                return pod
    bad = set(parse_indexes(_dict(job.get("status")).get("failedIndexes")))
    of_failed_index = [p for p in failed if pod_index(p) in bad]
    return (of_failed_index or failed)[-1]
