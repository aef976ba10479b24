"""What results.json adds to DESIGN.md's fields so it says what happened. Pure.

Each task's ``state`` is one of ``done | failed | cancelled | skipped`` — the task table's
FAILED is split by why: the app was cancelled or failed by the grid before the task could
finish (``cancelled``), a predecessor failed so it never ran (``skipped``), or it really
failed (``failed``: out of retries, timed out, lost too often, or no volunteer could ever run
it). Beside it: ``reason`` and the wall-clock ``started``/``ended`` of its last attempt (ISO
8601, UTC; null where this coordinator did not see it happen, e.g. before a takeover). The
document's ``outcome`` is the app's: state, reason, start and end.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState
from bonjourgrid.states.tasktable import TaskRecord, TaskTable

SKIPPED_PREFIX = "dependency "
"""The task table's reason for a successor of a failed task (``dependency <id> failed``)."""


def iso(t: float | None) -> str | None:
    """``2026-12-07T01:52:02.123Z`` for a Unix time; None stays None."""
    if t is None:
        return None
    d = datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def task_state(rec: TaskRecord, stopped_by: str) -> str:
    """The results.json state of ``rec``; ``stopped_by`` is the reason the app was
    cancelled or failed with ("" while it runs or once it finished)."""
    if rec.state is not TaskState.FAILED:
        return str(rec.state.value)
    if stopped_by and rec.reason == stopped_by:
        return "cancelled"
    if rec.reason.startswith(SKIPPED_PREFIX) and rec.attempts == 0:
        return "skipped"
    return "failed"


def state_counts(table: TaskTable, stopped_by: str) -> dict[str, int]:
    """Tasks per state, the table's ``failed`` split as in results.json: ``cancelled`` and
    ``skipped`` are counted apart (a task that never ran is not a failure), every key
    present. What ``bjgrid submit`` and ``bjgrid apps`` count."""
    out = {s.value: n for s, n in table.counts().items()} | {"cancelled": 0, "skipped": 0}
    if out[TaskState.FAILED.value]:  # only then are records read (a big app's updates)
        for rec in table.records():
            if rec.state is TaskState.FAILED:
                out[TaskState.FAILED.value] -= 1
                out[task_state(rec, stopped_by)] += 1
    return out


@dataclass
class TaskTimes:
    """Wall-clock start and end of each task's last attempt, as this coordinator saw them."""

    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)

    def note(self, entry: je.Entry, table: TaskTable, now: float) -> None:
        """After ``entry`` changed ``table`` at Unix time ``now``."""
        if isinstance(entry, je.Started):
            self.started[entry.task] = now
            self.ended.pop(entry.task, None)
            return
        task = getattr(entry, "task", None)
        ids = [task] if isinstance(task, str) else [r.id for r in table.records()]
        for tid in ids:
            fresh = tid in self.started and tid not in self.ended
            if fresh and table.state(tid) in TERMINAL_STATES:
                self.ended[tid] = now

    def of(self, task: str) -> tuple[str | None, str | None]:
        return iso(self.started.get(task)), iso(self.ended.get(task))


def outcome(
    state: str, reason: str, started: float | None, ended: float | None
) -> dict[str, object]:
    """The document's top-level ``outcome``: ``running`` until the app ends."""
    return {"state": state or "running", "reason": reason, "started": iso(started),
            "ended": iso(ended)}  # fmt: skip
