"""results.json says what happened: `done | failed | cancelled | skipped` with a reason,
wall-clock times of the last attempt, and the app's outcome (results_detail.py)."""

from __future__ import annotations

from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.coordinator.result_store import results_document
from bonjourgrid.coordinator.results_detail import TaskTimes, iso, outcome, task_state
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.taskstate import TaskState
from bonjourgrid.states.tasktable import TaskRecord, TaskTable


def rec(state: TaskState, reason: str = "", attempts: int = 0) -> TaskRecord:
    return TaskRecord("t", state, attempts, None, None, None, reason)


def test_failed_is_split_by_why() -> None:
    cancel = "cancelled by the user"
    assert task_state(rec(TaskState.FAILED, cancel), cancel) == "cancelled"
    assert task_state(rec(TaskState.FAILED, cancel, attempts=1), cancel) == "cancelled"
    assert task_state(rec(TaskState.FAILED, "dependency a failed"), "") == "skipped"
    assert task_state(rec(TaskState.FAILED, "exit 3", attempts=2), cancel) == "failed"
    assert task_state(rec(TaskState.DONE, attempts=1), cancel) == "done"


def test_a_task_that_ran_is_never_called_skipped_whatever_its_reason() -> None:
    """Hostile-looking text: a reason that starts like the skip reason but the task ran."""
    assert task_state(rec(TaskState.FAILED, "dependency on a flaky disk", 1), "") == "failed"
    assert task_state(rec(TaskState.FAILED, "whatever", 0), "") == "failed"  # no volunteer fit


def spec(*ids: str, after: tuple[str, ...] = ()) -> tuple[TaskSpec, ...]:
    return tuple(TaskSpec(id=i, command=("true",), retries=0, after=after if i == ids[-1] else ())
                 for i in ids)  # fmt: skip


def test_the_document_keeps_design_fields_and_adds_times_and_outcome() -> None:
    from bonjourgrid.app.spec import AppSpec

    tasks = spec("a", "b", after=("a",))
    table = TaskTable(tasks)
    times = TaskTimes()
    for entry, now in ((je.Started("a", 1, "n1", "h1", 0.0), 1000.0),
                       (je.Finished("a", 1, 3, 0.5, 0.5), 1000.5)):  # fmt: skip
        assert je.apply(table, entry)
        times.note(entry, table, now)
    doc = results_document("ab12", AppSpec("app", tasks), table, {"n1": "h1"}, times=times,
                           app_outcome=outcome("finished", "", 999.0, 1001.0))  # fmt: skip
    a, b = doc["tasks"]  # type: ignore[misc]
    assert a["state"] == "failed" and a["exit_code"] == 3 and a["worker"] == "h1"
    assert (a["started"], a["ended"]) == ("1970-01-01T00:16:40.000Z", "1970-01-01T00:16:40.500Z")
    assert b["state"] == "skipped" and b["reason"] == "dependency a failed"
    assert (b["started"], b["ended"], b["attempts"]) == (None, None, 0)
    assert doc["outcome"] == {"state": "finished", "reason": "",
                              "started": iso(999.0), "ended": iso(1001.0)}  # fmt: skip


def test_a_retry_clears_the_end_of_the_earlier_attempt() -> None:
    table = TaskTable(spec("a"))
    times = TaskTimes()
    times.note(je.Started("a", 1, "n", "h", 0.0), table, 10.0)
    times.note(je.Started("a", 2, "n", "h", 0.0), table, 20.0)
    assert times.of("a") == (iso(20.0), None)
    assert outcome("", "", None, None)["state"] == "running"


def test_progress_counts_split_failed_like_results_json() -> None:
    """`bjgrid submit`/`apps` count a task that never ran apart from a failure."""
    from bonjourgrid.coordinator.results_detail import state_counts

    table = TaskTable(spec("a", "b", "c", after=("a",)))
    for entry in (je.Started("a", 1, "n1", "h1", 0.0), je.Finished("a", 1, 3, 0.5, 0.5)):
        assert je.apply(table, entry)
    got = state_counts(table, "")
    assert (got["failed"], got["skipped"], got["cancelled"], got["ready"]) == (1, 1, 0, 1)
    assert sum(got.values()) == 3
