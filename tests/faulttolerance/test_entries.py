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
        je.Started("t", 1, "w", "h", je.NO_CLOCK),
        je.Finished("t", 1, 0, 1.5, je.NO_CLOCK, 2),
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


def test_an_old_journal_reads_with_its_clock_readings_dropped() -> None:
    """Journals written before entries stopped carrying ``time.monotonic()`` (one machine's
    clock, meaningless on another) still decode and replay: the readings are dropped, the
    durations are the worker's ``seconds``."""
    old = [
        '{"k":"start","task":"t","attempt":1,"worker":"w","host":"h","at":81234.5}',
        '{"k":"finish","task":"t","attempt":1,"exit_code":0,"seconds":2.25,"at":99.0,"term":1}',
    ]
    started, finished = (je.decode(line) for line in old)
    assert started == je.Started("t", 1, "w", "h", je.NO_CLOCK)
    assert isinstance(finished, je.Finished)
    assert (finished.at, finished.seconds) == (je.NO_CLOCK, 2.25)
    table = je.replay(TaskTable([TaskSpec(id="t", command=("true",))]), [started, finished])
    assert table.record("t").seconds == 2.25


def test_a_new_entry_carries_no_clock_reading_and_an_old_reader_still_decodes_it() -> None:
    """``at`` stays in the JSON (as 0.0) so an older daemon, whose decoder needs the field,
    reads a new journal; and an entry missing it decodes too."""
    text = je.encode(je.Started("t", 1, "w", "h", je.NO_CLOCK))
    assert '"at":0.0' in text
    assert je.decode('{"k":"start","task":"t","attempt":1,"worker":"w","host":"h"}') == (
        je.Started("t", 1, "w", "h", je.NO_CLOCK)
    )
