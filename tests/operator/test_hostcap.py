"""Admission with a cap of attempt renders per Moodle host: FIFO per host, other hosts go
ahead, and the waiting job says why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from moodle_archive_operator.archivejob import ANNOTATION_ARCHIVEJOB
from moodle_archive_operator.controller.decide import decide
from moodle_archive_operator.controller.hostcap import (
    ANNOTATION_MOODLE_HOST,
    lingering_renders,
    moodle_host,
    plan_host_admission,
)
from moodle_archive_operator.controller.jobspec import build_job
from moodle_archive_operator.controller.queueing import plan_admission
from tests.operator.objects import T0, archivejob, stamp
from tests.operator.test_builders import settings

A = "https://a.example.org/moodle"
B = "https://b.example.org"


def at(base_url: str, second: int, shards: int | None = None) -> dict[str, Any]:
    aj = archivejob(created=T0 + timedelta(seconds=second))
    aj["spec"]["moodle"]["baseUrl"] = base_url
    if shards is not None:
        aj["status"] = {"shardCount": shards}
    return aj


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def renders(concurrency: int) -> Any:
    return lambda aj: concurrency * ((aj.get("status") or {}).get("shardCount") or 1)


def test_host_is_the_normalised_base_url() -> None:
    def host(url: str) -> str:
        return moodle_host({"spec": {"moodle": {"baseUrl": url}}})

    assert host("HTTPS://A.Example.org:443/moodle/") == "https://a.example.org/moodle"
    assert host("http://a.example.org:80") == "http://a.example.org"
    assert host("http://a.example.org:8080/") == "http://a.example.org:8080"
    assert host("https://a.example.org/moodle") != host("https://a.example.org/other")


def test_without_a_cap_only_slots_count() -> None:
    waiting = [at(A, i) for i in range(5)]
    plan = plan_host_admission(waiting, [at(A, -1, shards=4)], 3, 0, renders(4))
    assert names(plan.admit) == names(waiting[:3]) and plan.busy == {}


def test_a_busy_host_holds_its_jobs_in_order_and_lets_other_hosts_through() -> None:
    running = [at(A, -1, shards=2)]  # 2 shards x 4 = 8 renders on A
    a1, a2, b1, a3, b2 = at(A, 1), at(A, 2), at(B, 3), at(A, 4), at(B, 5)
    plan = plan_host_admission([a1, a2, b1, a3, b2], running, 10, 10, renders(4))
    # a1 needs 4 more on A (8 + 4 > 10): it waits, and a2, a3 wait behind it; B goes ahead
    assert names(plan.admit) == names([b1, b2])
    assert set(plan.busy) == set(names([a1, a2, a3]))
    assert "8 of 10 renders in use" in plan.busy[a1["metadata"]["name"]]
    assert f"waiting behind {a1['metadata']['name']}" in plan.busy[a2["metadata"]["name"]]
    assert plan.renders == {"https://a.example.org/moodle": 8, "https://b.example.org": 8}


def test_admissions_in_one_round_count_against_the_cap() -> None:
    a1, a2, a3 = at(A, 1), at(A, 2), at(A, 3)
    plan = plan_host_admission([a1, a2, a3], [], 5, 8, renders(4))
    assert names(plan.admit) == names([a1, a2]) and list(plan.busy) == names([a3])


def test_a_job_bigger_than_the_cap_runs_alone_on_an_idle_host() -> None:
    big = at(A, 1)
    assert names(plan_host_admission([big], [], 2, 2, renders(4)).admit) == names([big])
    plan = plan_host_admission([big], [at(A, 0)], 2, 2, renders(4))
    assert plan.admit == [] and names([big])[0] in plan.busy


def test_without_free_slots_the_host_still_says_who_waits_for_it() -> None:
    waiting = [at(A, 1), at(B, 2), at(B, 3)]
    plan = plan_host_admission(waiting, [], 1, 100, renders(2))
    assert names(plan.admit) == names(waiting[:1]) and plan.busy == {}
    full = plan_host_admission(waiting, [at(B, 0)], 0, 2, renders(2))
    assert full.admit == [] and list(full.busy) == names(waiting[1:])  # B is full; A just waits


def test_with_the_slot_plan_the_oldest_of_another_host_is_admitted() -> None:
    running = at(A, 0)
    running["status"] = {"conditions": [{"type": "Admitted", "status": "True", "reason": "x",
                                         "lastTransitionTime": stamp(T0)}]}  # fmt: skip
    waiting = [at(A, 1), at(B, 2)]
    slots = plan_admission([running, *waiting], [], 3)
    plan = plan_host_admission(slots.waiting, [running], slots.free, 4, renders(4))
    assert names(plan.admit) == names(waiting[1:])


def test_a_held_back_job_is_queued_with_the_reason() -> None:
    aj = at(A, 1)
    why = "Moodle https://a.example.org/moodle is busy: 8 of 10 renders in use, this job needs 4"
    decision = decide(aj, None, True, T0 + timedelta(seconds=5), settings(), host_busy=why)
    assert decision.patch["phase"] == "Queued"
    [admitted] = [c for c in decision.patch["conditions"] if c["type"] == "Admitted"]
    assert (admitted["status"], admitted["reason"], admitted["message"]) == (
        "False", "MoodleHostBusy", why,
    )  # fmt: skip
    assert decision.patch["message"] == why
    assert [e.reason for e in decision.events] == ["MoodleHostBusy"]
    plain = decide(aj, None, True, T0 + timedelta(seconds=5), settings())
    assert plain.patch["message"] == "waiting for a free slot"


def pod_of(owner: str, host: str | None) -> dict[str, Any]:
    annotations = {ANNOTATION_ARCHIVEJOB: owner}
    if host is not None:
        annotations[ANNOTATION_MOODLE_HOST] = host
    return {"metadata": {"name": f"{owner}-x", "annotations": annotations}}


def test_job_pods_say_which_moodle_host_they_render_from() -> None:
    aj = at("HTTPS://A.example.org/moodle/", 0)
    template = build_job(aj, settings())["spec"]["template"]
    assert template["metadata"]["annotations"][ANNOTATION_MOODLE_HOST] == moodle_host(aj)


def test_pods_still_stopping_count_until_they_are_gone() -> None:
    """A cancelled (or finished, or deleted) job no longer holds a slot, but its pods that
    have not terminated still load its Moodle: they count, each with its concurrency."""
    host_a = moodle_host(at(A, 0))
    pods = [pod_of("cancelled", host_a), pod_of("running", host_a), pod_of("old", None)]
    stopping = lingering_renders(pods, ["running"], per_pod=3)
    assert stopping == {host_a: 3}  # the running job counts by its slot; no host: unknown
    running = [at(A, -1)]
    waiting = [at(A, 1)]
    held = plan_host_admission(waiting, running, 4, 8, renders(3), stopping)
    assert held.admit == [] and "6 of 8 renders in use" in held.busy[names(waiting)[0]]
    gone = plan_host_admission(waiting, running, 4, 8, renders(3), {})  # the pod is gone
    assert names(gone.admit) == names(waiting)
