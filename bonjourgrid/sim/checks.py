"""The properties every run is checked against, and the run's event log.

1. No double-booked machine: a volunteer's assignment only ever changes app through Idle,
   and a task only starts on a machine serving its app. Exactly one term commits each
   result: no result is committed by a term lower than one already claimed for its app.
2. No lost or duplicated result: at the end every task of every app is terminal in its
   final coordinator's table, each DONE task was committed exactly once (one attempt, the one
   the table records; a later term may commit that same entry again after a takeover, as its
   journal carries it), and every replica that heard the end holds the same table, also when
   its journal is replayed into a fresh table. A result is committed when it is acknowledged
   to its worker, or, if its worker is gone (or its resend comes too late), when its
   ``Finished`` entry is in the journal the app ended with: an app ends only once every
   entry is on ``W`` copies, so that entry is durable though nobody was acknowledged.
3. Every app finishes (unless every machine holding it crashed: reported as lost).

Violations are collected as sentences; the log (one line per notable event) is what a
run's digest is computed from.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.faulttolerance.entries import Entry, Finished, replay
from bonjourgrid.sim.clock import VirtualClock
from bonjourgrid.states.taskstate import TaskState
from bonjourgrid.states.tasktable import TaskRecord, TaskTable

Key = tuple[str, int]
"""(task id, attempt): the idempotency key of a result."""


@dataclass(frozen=True)
class Commit:
    attempt: int
    term: int
    coordinator: str
    worker: str
    at: float


class Checks:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.violations: list[str] = []
        self.lines: list[str] = []
        self.specs: dict[str, AppSpec] = {}
        self.commits: dict[tuple[str, str], list[Commit]] = defaultdict(list)
        self.max_term: dict[str, int] = {}
        self.final: dict[str, tuple[int, str, list[TaskRecord]]] = {}
        """app -> (term, outcome, records) of the coordinator that ended it."""
        self.final_journal: dict[str, tuple[Entry, ...]] = {}
        """app -> the journal its coordinator ended it with."""
        self.replica_tables: dict[str, list[tuple[str, list[TaskRecord]]]] = defaultdict(list)
        self.takeovers = 0
        self.step_downs = 0
        self.stale_commits = 0

    # --- during the run ------------------------------------------------------------------------

    def log(self, line: str) -> None:
        self.lines.append(f"{self.clock.now:.6f} {line}")

    def violation(self, what: str) -> None:
        self.violations.append(f"t={self.clock.now:.3f}: {what}")
        self.log(f"VIOLATION {what}")

    def app_submitted(self, app: str, spec: AppSpec, node: str) -> None:
        self.specs[app] = spec
        self.log(f"submit {app} at {node} tasks={len(spec.tasks)} replicas={spec.replicas}")

    def assignment_changed(self, node: str, old: str | None, new: str | None, now: float) -> None:
        if old is not None and new is not None:
            self.violation(f"{node} went from app {old} to app {new} without being idle")
        self.log(f"{node} serves {new}")

    def task_started(self, node: str, app: str, serving: str, now: float) -> None:
        if app != serving:
            self.violation(f"{node} started a task of {app} while serving {serving}")

    def term_claimed(self, app: str, term: int, node: str, now: float) -> None:
        if term > 1:
            self.takeovers += 1
        self.max_term[app] = max(self.max_term.get(app, 0), term)
        self.log(f"{app} term {term} coordinated by {node}")

    def committed(self, app: str, key: Key, term: int, coordinator: str, worker: str) -> None:
        if term < self.max_term.get(app, 0):
            self.stale_commits += 1
            self.violation(
                f"{app}: {key[0]}#{key[1]} committed by term {term} after term "
                f"{self.max_term[app]} was claimed"
            )
        self.commits[(app, key[0])].append(
            Commit(key[1], term, coordinator, worker, self.clock.now)
        )
        self.log(f"{app} commit {key[0]}#{key[1]} term {term} from {worker}")

    def stepped_down(self, app: str, node: str, term: int) -> None:
        self.step_downs += 1
        self.log(f"{app} coordinator {node} stepped down (saw term {term})")

    def app_ended(
        self,
        app: str,
        term: int,
        node: str,
        outcome: str,
        table: TaskTable,
        journal: Sequence[Entry] = (),
    ) -> None:
        self.final[app] = (term, outcome, table.records())  # the coordinator's own word wins
        self.final_journal[app] = tuple(journal)
        self.log(f"{app} ended {outcome} term {term} at {node}")

    def replica_ended(
        self,
        app: str,
        node: str,
        table: TaskTable,
        journal: Sequence[Entry],
        term: int,
        outcome: str,
    ) -> None:
        """A replica heard the end: the app ended even if its coordinator dies right now."""
        records = table.records()
        if app not in self.final:
            self.final[app] = (term, outcome, records)
        replayed = replay(TaskTable(self.specs[app].tasks), journal).records()
        if replayed != records:
            self.violation(f"{app}: replica {node}'s journal does not replay to its table")
        self.replica_tables[app].append((node, records))

    # --- at the end ----------------------------------------------------------------------------

    def finish(self, lost: set[str]) -> None:
        """The end-of-run checks; ``lost`` are apps whose every holder crashed."""
        for app in self.specs:
            if app in lost:
                continue
            final = self.final.get(app)
            if final is None:
                self.violation(f"{app} did not finish")
                continue
            _, outcome, records = final
            if outcome != "finished":
                self.violation(f"{app} ended {outcome}")
            for r in records:
                self._check_task(app, r)
            for node, table in self.replica_tables.get(app, []):
                if table != records:
                    self.violation(f"{app}: replica {node}'s table differs from the coordinator's")

    def _check_task(self, app: str, r: TaskRecord) -> None:
        commits = self.commits.get((app, r.id), [])
        if r.state is TaskState.DONE and not commits:
            commits = self._journaled(app, r)
        if r.state is TaskState.DONE:
            attempts = {c.attempt for c in commits}
            if len(attempts) != 1:
                self.violation(f"{app}: {r.id} committed {len(attempts)} times: {commits}")
            elif commits[0].attempt != r.attempts:
                self.violation(
                    f"{app}: {r.id} committed #{commits[0].attempt}, table #{r.attempts}"
                )
        elif r.state is TaskState.FAILED:
            if commits:
                self.violation(f"{app}: failed task {r.id} has a committed result")
        else:
            self.violation(f"{app}: task {r.id} ended the run {r.state.value}")

    def _journaled(self, app: str, r: TaskRecord) -> list[Commit]:
        """The commit of ``r``'s result that the final journal holds, acknowledged or not."""
        for e in self.final_journal.get(app, ()):
            if isinstance(e, Finished) and e.task == r.id and e.attempt == r.attempts:
                return [Commit(e.attempt, e.term, "(journal)", e.worker, self.clock.now)]
        return []

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.lines).encode()).hexdigest()
