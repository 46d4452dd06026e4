"""`metav1.Condition` lists, kept the Kubernetes way: keyed by type, a transition time
that changes only when the status does. Plain dicts in and out (camelCase keys). Every
message is one line of at most a few hundred characters (reasons.one_line).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from moodle_archive_job.reasons import one_line

ConditionStatus = Literal["True", "False", "Unknown"]

# The order conditions are listed in (the summary last, as Tekton and the Job API do).
ORDER = ("Admitted", "PodScheduled", "PodRunning", "Uploaded", "MoodleNotified", "Succeeded")


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def find(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    cond = find(conditions, type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with `type_` set; its lastTransitionTime moves only if its status changed."""
    old = find(conditions, type_)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    new: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": one_line(message),
        "lastTransitionTime": since or timestamp(now),
    }
    if generation is not None:
        new["observedGeneration"] = generation
    rest = [c for c in conditions if isinstance(c, dict) and c.get("type") != type_]
    return sorted([*rest, new], key=_order_key)


def _order_key(cond: dict[str, Any]) -> tuple[int, str]:
    type_ = str(cond.get("type", ""))
    return (ORDER.index(type_) if type_ in ORDER else len(ORDER), type_)
