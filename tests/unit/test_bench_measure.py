"""The benches' CPU accounting by kind of process (bench/_measure.py), on made-up samples."""

from __future__ import annotations

import pytest

from bench._measure import TreeMemorySampler


def accounted(samples: dict[int, tuple[str, float, float, int]]) -> dict[str, float]:
    sampler = TreeMemorySampler(pid=1)
    sampler._cpu = dict(samples)  # what the last sample of each process saw
    return {kind: round(seconds, 6) for kind, seconds in sampler.cpu_by_kind().items()}


def test_a_child_reaped_after_the_last_round_counts_once() -> None:
    # The driver starts Chromium through sh; all three were last seen in the same round, and
    # then the driver reaped sh, which had reaped the browser: the browser's 3 s are in the
    # driver's reaped time, and must not be counted a second time.
    totals = accounted({
        10: ("runner python", 1.0, 4.5, 1),
        11: ("playwright driver", 1.5, 3.0, 10),
        12: ("sh", 0.0, 0.0, 11),
        13: ("chromium browser", 3.0, 0.0, 12),
    })  # fmt: skip
    assert totals["chromium browser"] == 3.0
    assert totals["playwright driver"] == 1.5
    assert sum(totals.values()) == pytest.approx(5.5)


def test_time_after_a_child_was_last_seen_goes_to_its_kind() -> None:
    # The renderer was last seen at 2 s of CPU, and its parent reaped 2.5 s of it.
    totals = accounted({
        20: ("chromium zygote", 0.1, 2.5, 1),
        21: ("chromium renderer", 2.0, 0.0, 20),
    })  # fmt: skip
    assert totals == {"chromium zygote": 0.1, "chromium renderer": 2.5}


def test_children_never_seen_are_named_after_their_parent() -> None:
    totals = accounted({30: ("runner python", 1.0, 0.4, 1)})
    assert totals == {"runner python": 1.0, "runner python's children": 0.4}
