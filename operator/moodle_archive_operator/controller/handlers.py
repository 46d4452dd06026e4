"""Kopf handlers: watch ArchiveJobs, our Jobs and their pods, and FailedCreate Events, and
feed the runtime's work queue. Raw event handlers only: Kopf stores nothing on the
objects (no annotations, no finalizers); all state is the objects themselves.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf

from ..archivejob import GROUP, PLURAL, VERSION
from .naming import CHILD_SELECTOR, LABEL_MANAGED_BY, MANAGED_BY, owner_name
from .observe import is_job_finished
from .queueing import is_admitted, is_final
from .runtime import Runtime

OURS = {LABEL_MANAGED_BY: MANAGED_BY}
FAILED_CREATE_SELECTOR = "reason=FailedCreate,involvedObject.kind=Job"


def configure(settings: kopf.OperatorSettings) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True
    # Server-side filters: only our Jobs and pods, only FailedCreate Events.
    settings.watching.label_selectors["batch", "v1", "jobs"] = CHILD_SELECTOR
    settings.watching.label_selectors["v1", "pods"] = CHILD_SELECTOR
    settings.watching.field_selectors["v1", "events"] = FAILED_CREATE_SELECTOR


def _runtime(memo: Any) -> Runtime:
    return memo.runtime


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    await _runtime(memo).start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).stop()


@kopf.on.probe(id="operator")
def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    return _runtime(memo).probe()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def archivejob_event(type: str | None, name: str, body: kopf.Body, memo: kopf.Memo,
                           **_: Any) -> None:  # fmt: skip
    runtime = _runtime(memo)
    if type == "DELETED":
        snapshot = copy.deepcopy(dict(body))
        task = asyncio.create_task(runtime.archivejob_deleted(snapshot))
        runtime.background(task)
        return
    runtime.enqueue(name)
    if not is_final(body) and not is_admitted(body):
        runtime.wake_admission()  # a candidate: no need to wait for its Queued status


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def job_event(type: str | None, name: str, body: kopf.Body, memo: kopf.Memo,
                    **_: Any) -> None:  # fmt: skip
    runtime = _runtime(memo)
    owner = owner_name(body)
    if owner:
        runtime.job_owners[name] = owner
        runtime.enqueue(owner)
    if type == "DELETED" or is_job_finished(body):
        runtime.wake_admission()
        if type == "DELETED":
            runtime.job_owners.pop(name, None)


@kopf.on.event("v1", "pods", labels=OURS)
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = owner_name(body)
    if owner:
        _runtime(memo).enqueue(owner)


@kopf.on.event("v1", "events", field="reason", value="FailedCreate")
async def failed_create_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    involved = body.get("involvedObject") or {}
    if involved.get("kind") != "Job":
        return
    runtime = _runtime(memo)
    job_name = str(involved.get("name"))
    owner = runtime.job_owners.get(job_name)
    if owner:
        runtime.enqueue(owner)
