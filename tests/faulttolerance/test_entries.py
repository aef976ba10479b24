"""Journal entries replay to the very table the coordinator had."""

from __future__ import annotations

import random

import pytest

from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.taskstate import TaskState
from bonjourgrid.states.tasktable import TaskTable


def _specs() -> list[TaskSpec]:
    out = [TaskSpec(id=f"t{i}", command=("true",), retries=1) for i in range(8)]
    out.append(TaskSpec(id="sum", command=("true",), after=tuple(t.id for t in out)))
    return out


def _live_run(seed: int) -> tuple[TaskTable, list[str]]:
    """Drive a table through random starts, results and losses, journaling every change."""
    rng = random.Random(seed)
    table, log = TaskTable(_specs()), []

    def record(entry: je.Entry) -> None:
        if je.apply(table, entry):
            log.append(je.encode(entry))

    t = 0.0
    while not table.finished():
        t += 1.0
        for task in table.ready()[:3]:
            record(
                je.Started(task, table.record(task).attempts + 1, f"w{rng.randrange(3)}", "h", t)
            )
        for a in table.running():
            roll = rng.random()
            if roll < 0.6:
                record(je.Finished(a.task, a.attempt, rng.choice([0, 0, 0, 1]), 0.5, t, 1))
            elif roll < 0.7:
                record(je.Abandoned(a.task, a.attempt, "worker lost", False))
            elif roll < 0.75:
                # a late duplicate of the same result changes nothing and is not journaled
                record(je.Finished(a.task, a.attempt - 1, 0, 0.5, t, 1))
    return table, log


@pytest.mark.parametrize("seed", range(20))
def test_replaying_the_journal_rebuilds_the_same_table(seed: int) -> None:
    live, log = _live_run(seed)
    replayed = je.replay(TaskTable(_specs()), (je.decode(x) for x in log))
    assert replayed.records() == live.records()


def test_entries_round_trip_as_json() -> None:
    for e in (
        je.Started("t", 1, "w", "h", 2.5),
        je.Finished("t", 1, 0, None, 3.0, 2),
        je.Abandoned("t", 1, "timed out", True, 4.0),
        je.GaveUp("t", "no volunteer"),
        je.Cancelled("by the user"),
    ):
        assert je.decode(je.encode(e)) == e


@pytest.mark.parametrize("text", ["", "{}", '{"k":"nope"}', '{"k":"start","task":"t"}', "[1]"])
def test_undecodable_entries_raise_bad_entry(text: str) -> None:
    with pytest.raises(je.BadEntry):
        je.decode(text)


def test_a_start_that_disagrees_with_the_table_is_refused() -> None:
    table = TaskTable(_specs())
    with pytest.raises(je.BadEntry):
        je.apply(table, je.Started("t0", 2, "w", "h", 0.0))
    assert table.state("t0") is TaskState.READY


def test_a_duplicate_result_changes_nothing() -> None:
    table = TaskTable(_specs())
    je.apply(table, je.Started("t0", 1, "w", "h", 0.0))
    assert je.apply(table, je.Finished("t0", 1, 0, 1.0, 1.0, 1))
    assert not je.apply(table, je.Finished("t0", 1, 0, 1.0, 1.0, 2))
