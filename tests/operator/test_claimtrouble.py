"""A work volume whose claim the API server refuses: which refusals are retried, for how
long, and what the waiting ArchiveJob shows meanwhile (pure plans)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from moodle_archive_operator.controller.claimtrouble import (
    FIELD,
    WORK_VOLUME_CREATE_FAILED,
    Refusal,
    after_refusal,
    retry_in,
)
from moodle_archive_operator.controller.conditions import find
from moodle_archive_operator.controller.decide import decide
from moodle_archive_operator.controller.workvolume import WorkVolume
from tests.operator.objects import T0, archivejob
from tests.operator.test_builders import settings

VOLUME = WorkVolume("archive-x-work", "fast-ssd", "ReadWriteOnce", "1072Mi")
QUOTA = (
    'persistentvolumeclaims "archive-x-work" is forbidden: exceeded quota: pvcs, requested: '
    "persistentvolumeclaims=1, used: persistentvolumeclaims=2, limited: persistentvolumeclaims=2"
)
INVALID = (
    'PersistentVolumeClaim "archive-x-work" is invalid: spec.storageClassName: Invalid value: '
    '"Fast_SSD": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters'
)
RBAC = (
    'persistentvolumeclaims is forbidden: User "system:serviceaccount:x" cannot create '
    'resource "persistentvolumeclaims"'
)


def apply(aj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return {**aj, "status": {**(aj.get("status") or {}), **patch}}


@pytest.mark.parametrize(
    ("status", "message", "passing"),
    [
        (403, QUOTA, True),  # other jobs' volumes free the quota
        (403, "status unknown for quota: pvcs, resource: persistentvolumeclaims", True),
        (None, "", True),  # no answer
        (503, "", True),
        (429, "", True),
        (422, INVALID, False),
        (403, RBAC, False),
        (404, 'namespaces "jobs" not found', False),
    ],
)
def test_which_refusals_may_pass(status: int | None, message: str, passing: bool) -> None:
    assert Refusal(status, message).passing is passing


def test_a_permanent_refusal_fails_at_once_naming_the_claim_its_class_and_the_api() -> None:
    step = after_refusal(archivejob(), VOLUME, Refusal(422, INVALID), T0, 600)
    assert step.fail is not None and step.patch == {}
    assert step.fail.startswith(
        "the work volume archive-x-work (StorageClass fast-ssd, 1072Mi) could not be created: "
        'PersistentVolumeClaim "archive-x-work" is invalid'
    )
    assert "\n" not in step.fail and len(step.fail) <= 300


def test_a_passing_refusal_is_retried_with_backoff_until_the_pending_timeout() -> None:
    aj = archivejob()
    delays, now = [], T0
    while True:
        step = after_refusal(aj, VOLUME, Refusal(403, QUOTA), now, 120)
        if step.fail is not None:
            break
        assert step.retry_after is not None
        delays.append(step.retry_after)
        aj = apply(aj, step.patch)
        assert retry_in(aj, now) == pytest.approx(step.retry_after)  # the admitter skips it
        now += timedelta(seconds=math.ceil(step.retry_after))  # whole seconds, as in the status
        assert retry_in(aj, now) == 0
    assert delays[:3] == sorted(delays[:3]) and max(delays) <= 72  # 5 s doubling, cap 60 s
    assert (now - T0).total_seconds() >= 120
    assert f"could not be created (tried {len(delays) + 1} times in" in step.fail
    assert "exceeded quota" in step.fail


def test_the_waiting_archivejob_shows_the_refusal_and_is_looked_at_when_the_try_is_due() -> None:
    aj = archivejob()
    step = after_refusal(aj, VOLUME, Refusal(403, QUOTA), T0, 600)
    aj = apply(aj, step.patch)
    assert aj["status"][FIELD]["attempts"] == 1
    decision = decide(aj, None, True, T0 + timedelta(seconds=1), settings())
    cond = find(decision.patch["conditions"], "Admitted")
    assert (cond["status"], cond["reason"]) == ("False", WORK_VOLUME_CREATE_FAILED)
    assert cond["message"].startswith("retrying in ") and "(try 2): the work volume" in (
        cond["message"]
    )
    assert "exceeded quota" in cond["message"]
    assert decision.patch["phase"] == "Queued"
    assert decision.requeue_after == pytest.approx(step.retry_after - 1, abs=0.01)
    assert [e.type for e in decision.events] == ["Warning"]
