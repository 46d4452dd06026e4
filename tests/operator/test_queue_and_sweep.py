"""Admission planning (slots, FIFO), the work queue, and what housekeeping deletes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from moodle_archive_operator.controller.decide import admitted_patch
from moodle_archive_operator.controller.queueing import plan_admission
from moodle_archive_operator.controller.sweeping import (
    Owners,
    history_to_delete,
    leftover_token_secrets,
    orphaned_children,
    orphaned_token_secrets,
)
from moodle_archive_operator.controller.workqueue import KeyedLocks, WorkQueue
from tests.operator.objects import T0, archivejob, job, stamp, token_secret


def names(objs: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_fifo_by_creation_then_submission_then_name() -> None:
    a = archivejob(created=T0 + timedelta(seconds=2))
    b = archivejob(created=T0)
    c = archivejob(created=T0)  # same second as b, submitted later
    c["spec"]["submittedAt"] = stamp(T0).replace("Z", ".500000Z")
    b["spec"]["submittedAt"] = stamp(T0).replace("Z", ".100000Z")
    plan = plan_admission([a, c, b], [], 2)
    assert names(plan.waiting) == names([b, c, a])
    assert names(plan.admit) == names([b, c])


def test_unfinished_jobs_and_admitted_archivejobs_hold_slots() -> None:
    running = archivejob()
    running["status"] = admitted_patch(running, "x", T0)
    done = archivejob(status={"phase": "Succeeded"})
    stopping = archivejob(status={"phase": "Cancelled"})  # final, but its Job still runs
    creating = archivejob()  # admitted, its Job not (yet) listed
    creating["status"] = admitted_patch(creating, "x", T0)
    finishing = archivejob()  # admitted, its Job finished, final state not yet written
    finishing["status"] = admitted_patch(finishing, "x", T0)
    waiting = [archivejob(created=T0 + timedelta(seconds=i)) for i in range(3)]
    jobs = [job(running), job(done, "Complete"), job(stopping), job(finishing, "Complete")]
    plan = plan_admission([running, done, stopping, creating, finishing, *waiting], jobs, 4)
    assert plan.holders == {
        running["metadata"]["name"], stopping["metadata"]["name"], creating["metadata"]["name"]
    }  # fmt: skip
    assert plan.free == 1 and names(plan.admit) == names(waiting[:1])


def test_cancelled_deleted_and_already_created_are_not_candidates() -> None:
    cancelled = archivejob(cancelRequested=True)
    deleting = archivejob()
    deleting["metadata"]["deletionTimestamp"] = stamp(T0)
    orphan_job_owner = archivejob()  # its Job exists but its status says nothing yet
    plan = plan_admission([cancelled, deleting, orphan_job_owner], [job(orphan_job_owner)], 4)
    assert plan.waiting == [] and plan.holders == {orphan_job_owner["metadata"]["name"]}


def test_history_keeps_the_newest_and_the_young() -> None:
    now = T0 + timedelta(days=10)
    finished = [
        archivejob(status={"phase": "Succeeded", "completionTime": stamp(T0 + timedelta(days=d))})
        for d in range(10)
    ]
    assert sorted(history_to_delete(finished, now, 3, 0)) == sorted(names(finished[:7]))
    assert sorted(history_to_delete(finished, now, 0, 2.5 * 86400)) == sorted(names(finished[:8]))
    assert history_to_delete(finished, now, 0, 0) == []


def test_orphans_and_leftover_token_secrets() -> None:
    live, finished, owing, gone = archivejob(), archivejob(), archivejob(), archivejob()
    for aj in (finished, owing):
        aj["metadata"]["labels"]["moodlearchiver.io/finished"] = "true"
        aj["status"] = {"phase": "Failed"}
    owing["status"]["pendingMoodleStatus"] = "FAILED"
    owners = Owners.of([live, finished, owing], [finished, owing])
    now = T0 + timedelta(minutes=10)

    def child(owner: dict, created=T0) -> dict:
        return {"metadata": {"name": "c-" + owner["metadata"]["name"],
                             "creationTimestamp": stamp(created),
                             "labels": {"moodlearchiver.io/archivejob-uid":
                                        owner["metadata"]["uid"]}}}  # fmt: skip

    young = child(gone, created=now - timedelta(seconds=5))
    children = [child(live), child(finished), child(gone), young]
    assert orphaned_children(children, owners, now, 60) == names([child(gone)])
    secrets = []
    for aj in (live, finished, owing, gone):
        s = token_secret(aj)
        assert "ownerReferences" not in s["metadata"]  # it must outlive a deleted ArchiveJob
        s["metadata"]["creationTimestamp"] = stamp(T0)
        secrets.append(s)
    young_secret = token_secret(archivejob())
    young_secret["metadata"]["creationTimestamp"] = stamp(now - timedelta(seconds=5))
    # Deleted at once: the finished ArchiveJob's that owes Moodle nothing.
    assert leftover_token_secrets([*secrets, young_secret], owners) == names([secrets[1]])
    # Moodle first: the gone ArchiveJob's (not the one that may still be being created).
    orphaned = orphaned_token_secrets([*secrets, young_secret], owners, now, 60)
    assert names(orphaned) == names([secrets[3]])
    # Old gateways' Secrets name their ArchiveJob by owner reference only.
    legacy = token_secret(finished)
    legacy["metadata"]["labels"].pop("moodlearchiver.io/archivejob-uid")
    legacy["metadata"]["ownerReferences"] = [
        {"kind": "ArchiveJob", "uid": finished["metadata"]["uid"]}
    ]
    assert leftover_token_secrets([legacy], owners) == names([legacy])


def test_history_never_deletes_an_archivejob_that_owes_moodle() -> None:
    owing = archivejob(status={"phase": "Failed", "completionTime": stamp(T0),
                               "pendingMoodleStatus": "TIMEOUT"})  # fmt: skip
    done = archivejob(status={"phase": "Failed", "completionTime": stamp(T0)})
    assert history_to_delete([owing, done], T0 + timedelta(days=30), 0, 86400) == names([done])


def test_work_queue_coalesces_and_reprocesses_changes_seen_while_busy() -> None:
    async def scenario() -> list[str]:
        queue, seen = WorkQueue(), []
        queue.add("a")
        queue.add("a")
        queue.add("b")
        name = await queue.get()
        seen.append(name)
        queue.add("a")  # changed while being processed: once more afterwards
        queue.done(name)
        while len(queue):
            name = await queue.get()
            seen.append(name)
            queue.done(name)
        queue.add_after("c", 0.05)
        queue.add_after("c", 1.0)  # the earlier wake-up wins
        seen.append(await asyncio.wait_for(queue.get(), 0.5))
        queue.close()
        return seen

    assert asyncio.run(scenario()) == ["a", "b", "a", "c"]


def test_keyed_locks_serialise_per_name_only() -> None:
    async def scenario() -> list[str]:
        locks, order = KeyedLocks(), []

        async def hold(name: str, tag: str, delay: float) -> None:
            async with locks.hold(name):
                order.append(f"{tag}+")
                await asyncio.sleep(delay)
                order.append(f"{tag}-")

        await asyncio.gather(hold("x", "1", 0.05), hold("x", "2", 0), hold("y", "3", 0))
        assert locks._locks == {}
        return order

    order = asyncio.run(scenario())
    assert order.index("1-") < order.index("2+")
    assert order.index("3+") < order.index("1-")
