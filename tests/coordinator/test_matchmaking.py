"""Matchmaking: requirements against advertised offers, ranking, and the 'nobody meets' text."""

from __future__ import annotations

import dataclasses
import re

from hypothesis import given
from hypothesis import strategies as st

from bonjourgrid.app.spec import ATTRIBUTE_NAME_PATTERN, Requirements, TaskSpec
from bonjourgrid.coordinator.matchmaking import Offer, candidates, fits, rank, unmet
from bonjourgrid.coordinator.scheduling import WorkerSlots, place
from bonjourgrid.discovery.txt import ATTRIBUTE_NAME


def offer(node: str = "n1", **kw: object) -> Offer:
    base = Offer(
        node=node, host=f"h-{node}", addresses=("169.254.0.1",), port=1, state="idle",
        cpus=4, slots=4, mem_mb=8000, os="linux", arch="x86_64", backends=("embedded",),
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


LAB2 = (("gpu", "none"), ("site", "lab2"))


def test_attributes_must_all_be_declared_with_equal_values():
    o = offer(attributes=LAB2)
    assert fits(o, Requirements(attributes=(("site", "lab2"),)), "embedded")
    assert fits(o, Requirements(attributes=LAB2), "embedded")
    assert not fits(o, Requirements(attributes=(("site", "lab3"),)), "embedded")
    assert not fits(o, Requirements(attributes=(("rack", "a"),)), "embedded")
    assert not fits(offer(), Requirements(attributes=(("site", "lab2"),)), "embedded")


def test_builtin_requirements_are_checked_against_the_record():
    o = offer()
    assert fits(o, Requirements(cpus=4, memory_mb=8000, os="linux", arch="x86_64"), "embedded")
    assert not fits(o, Requirements(cpus=5), "embedded")
    assert not fits(o, Requirements(memory_mb=8001), "embedded")
    assert not fits(o, Requirements(os="windows"), "embedded")
    assert not fits(o, Requirements(arch="arm64"), "embedded")
    assert not fits(o, Requirements(), "condor")


def test_unmet_names_the_requirement_nobody_meets_and_how_many_were_seen():
    offers = [offer(f"n{i}", attributes=LAB2) for i in range(6)]
    assert unmet(offers, Requirements(memory_mb=64000), "embedded") == (
        "no volunteer has memory_mb>=64000 (6 seen)"
    )
    assert unmet(offers, Requirements(attributes=(("site", "lab9"),)), "embedded") == (
        "no volunteer has site=lab9 (6 seen)"
    )
    assert unmet(offers, Requirements(attributes=(("site", "lab2"),)), "embedded") is None
    assert unmet([], Requirements(), "embedded") == "no volunteer seen yet"


def test_unmet_says_when_each_requirement_is_met_but_never_together():
    offers = [offer("big", mem_mb=64000), offer("lab", attributes=LAB2)]
    req = Requirements(memory_mb=64000, attributes=(("site", "lab2"),))
    text = unmet(offers, req, "embedded")
    assert text is not None and "together (2 seen: " in text
    assert "1 have memory_mb>=64000, 1 have site=lab2" in text  # counts per requirement


def test_candidates_prefer_free_idle_fast_machines():
    busy = offer("busy", load=2, slots=8)
    small = offer("small", slots=1, cpus=1)
    fast = offer("fast", slots=4, cpus=16)
    plain = offer("plain", slots=4, cpus=4)
    worker = offer("worker", state="worker")
    got = candidates([busy, small, plain, fast, worker], [Requirements()], "embedded")
    assert [o.node for o in got] == ["fast", "plain", "small", "busy"]
    assert rank(fast) < rank(plain)


def test_candidates_keep_only_volunteers_that_fit_some_need():
    lab2, other = offer("lab2", attributes=LAB2), offer("other")
    need = [Requirements(attributes=(("site", "lab2"),))]
    assert [o.node for o in candidates([other, lab2], need, "embedded")] == ["lab2"]


def test_a_task_is_only_placed_where_its_attributes_match():
    t = TaskSpec(id="t", command=("true",), requirements=Requirements(attributes=LAB2))
    workers = [
        WorkerSlots("other", 4, offer("other")),
        WorkerSlots("lab2", 1, offer("lab2", attributes=LAB2)),
    ]
    assert place([t], workers, "embedded") == [("t", "lab2")]
    assert place([t], workers[:1], "embedded") == []


@given(st.text(min_size=1, max_size=20))
def test_app_and_txt_agree_on_attribute_names(name):
    assert bool(re.fullmatch(ATTRIBUTE_NAME_PATTERN, name)) == bool(ATTRIBUTE_NAME.fullmatch(name))
