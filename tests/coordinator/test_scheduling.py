"""The coordinator's pure decisions: placement, recruiting, releasing, replica choice."""

from __future__ import annotations

from bonjourgrid.app.spec import Requirements, TaskSpec
from bonjourgrid.coordinator import scheduling as s
from bonjourgrid.coordinator.matchmaking import Offer


def _offer(node: str, slots: int = 2, mem: int = 1024, load: int = 0) -> Offer:
    return Offer(node, node, ("10.0.0.1",), 1, "idle", slots, slots, mem, "linux", "x86_64",
                 ("embedded",), load)  # fmt: skip


def _task(i: str, cpus: int = 1, mem: int = 0) -> TaskSpec:
    return TaskSpec(id=i, command=("true",), requirements=Requirements(cpus=cpus, memory_mb=mem))


def test_placement_fills_free_slots_and_no_more() -> None:
    workers = [s.WorkerSlots("a", 2, _offer("a")), s.WorkerSlots("b", 1, _offer("b"))]
    placed = s.place([_task(f"t{i}") for i in range(5)], workers, "embedded")
    assert len(placed) == 3
    assert sorted(n for _, n in placed) == ["a", "a", "b"]


def test_placement_skips_tasks_that_fit_nowhere_and_places_later_ones() -> None:
    workers = [s.WorkerSlots("a", 2, _offer("a", mem=512))]
    placed = s.place([_task("big", mem=4096), _task("small")], workers, "embedded")
    assert placed == [("small", "a")]


def test_a_two_cpu_task_needs_two_free_slots() -> None:
    workers = [s.WorkerSlots("a", 1, _offer("a")), s.WorkerSlots("b", 2, _offer("b"))]
    assert s.place([_task("t", cpus=2)], workers, "embedded") == [("t", "b")]


def test_unready_workers_get_nothing() -> None:
    workers = [s.WorkerSlots("a", 2, _offer("a"), ready=False)]
    assert s.place([_task("t")], workers, "embedded") == []


def test_recruiting_asks_only_for_unplaced_ready_tasks_within_the_limit() -> None:
    assert s.wanted_workers(unplaced=10, recruiting=2, linked=3, limit=8) == 3
    assert s.wanted_workers(unplaced=1, recruiting=1, linked=0, limit=8) == 0
    assert s.wanted_workers(unplaced=0, recruiting=0, linked=0, limit=8) == 0


def test_replicas_are_never_released_and_nobody_is_while_tasks_are_ready() -> None:
    assert s.releasable(ready_tasks=1, idle_workers=["a", "b"], replicas=[]) == []
    assert s.releasable(ready_tasks=0, idle_workers=["a", "b"], replicas=["b"]) == ["a"]


def test_replica_choice_keeps_current_ones_and_tops_up_in_staged_order() -> None:
    assert s.choose_replicas([], ["a", "b", "c"], 2) == ["a", "b"]
    assert s.choose_replicas(["c", "a"], ["a", "b", "c"], 2) == ["c", "a"]
    assert s.choose_replicas(["c", "x"], ["a", "b", "c"], 2) == ["c", "a"]
    assert s.choose_replicas(["a"], ["a"], 3) == ["a"]


def test_rivals_with_the_same_view_ask_in_different_orders() -> None:
    offers = [_offer(f"n{i}") for i in range(8)]
    need = [Requirements()]
    one = s.to_ask("app-1", offers, need, "embedded", exclude=(), wanted=8)
    two = s.to_ask("app-2", offers, need, "embedded", exclude=(), wanted=8)
    assert sorted(o.node for o in one) == sorted(o.node for o in two)
    assert [o.node for o in one] != [o.node for o in two]


def test_less_loaded_volunteers_are_asked_first() -> None:
    offers = [_offer("busy", load=3), _offer("calm", load=0)]
    assert [o.node for o in s.to_ask("a", offers, [Requirements()], "embedded", exclude=(),
                                     wanted=2)] == ["calm", "busy"]  # fmt: skip
