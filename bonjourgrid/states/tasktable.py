"""The coordinator's task table: DAG readiness, attempts, retries and exactly-once results.

Theory of operation
-------------------
Pure: no I/O, no clock (time is passed in). Every task is in one `TaskState`:

    PENDING --(all predecessors DONE)--> READY --start--> RUNNING --finish(exit 0)--> DONE
                                           ^                 |
                                           +--retry/lost-----+--(out of retries/losses)--> FAILED

* `start` numbers attempts 1, 2, 3... per task. Only a READY task can start; anything else
  raises `IllegalTaskTransition` and changes nothing.
* A result is accepted exactly once, keyed by (task, attempt). `finish` accepts:
  - the current attempt of a RUNNING task (any exit code), or
  - the latest attempt of a READY task, i.e. one that was abandoned (worker lost, timeout) and
    not yet superseded by a restart, and only if it succeeded (exit 0): the work is done, so
    the task is DONE. A late *failure* of an abandoned attempt is ignored: its abandonment
    already decided what happens next.
  Everything else (older attempts, duplicates, terminal tasks) returns False and changes
  nothing, so replaying a journal or a duplicated message is harmless.
* A failed attempt (non-zero exit, or a timeout: `abandon(counts_as_failure=True)`) is
  retried while failures <= `retries`; then the task is FAILED. A lost worker
  (`abandon(counts_as_failure=False)`) does not use up retries, but a task lost more than
  `max_losses` times is FAILED (it may be what kills its workers).
* When a task FAILS every transitive successor FAILS with reason "dependency <id> failed".
  When a task is DONE, each successor whose predecessors are all DONE turns READY.
* DONE and FAILED are terminal: nothing changes them again (`cancel` included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState

DEFAULT_MAX_LOSSES = 5
"""Worker losses a task survives; the next loss fails it (it may be killing its workers)."""

_S = TaskState
ALLOWED_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _S.PENDING: frozenset({_S.READY, _S.FAILED}),
    _S.READY: frozenset({_S.RUNNING, _S.DONE, _S.FAILED}),  # DONE: late result, see above
    _S.RUNNING: frozenset({_S.READY, _S.DONE, _S.FAILED}),
    _S.DONE: frozenset(),
    _S.FAILED: frozenset(),
}
"""The only state changes the table makes."""


class IllegalTaskTransition(Exception):
    """A command that the task's state does not allow; the table is unchanged."""


@dataclass(frozen=True)
class Attempt:
    """One run of one task on one worker; (task, attempt) is the idempotency key."""

    task: str
    attempt: int
    worker: str


@dataclass(frozen=True)
class TaskRecord:
    """A snapshot of one task, as results.json and `bjgrid status` report it."""

    id: str
    state: TaskState
    attempts: int
    exit_code: int | None
    worker: str | None
    seconds: float | None
    reason: str
    """Why the task failed; '' unless FAILED."""

    def to_json(self) -> dict[str, object]:
        """This task's entry in results.json (DESIGN.md's user-facing contract)."""
        return {
            "id": self.id,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "attempts": self.attempts,
            "worker": self.worker,
            "seconds": self.seconds,
        }


class _Entry:
    __slots__ = (
        "attempts",
        "exit_code",
        "failures",
        "losses",
        "preds",
        "reason",
        "seconds",
        "spec",
        "started_at",
        "state",
        "succs",
        "worker",
    )

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.state = TaskState.PENDING
        self.attempts = 0  # attempts started; the latest is number `attempts`
        self.failures = 0  # failed attempts (exit != 0, timeouts)
        self.losses = 0  # attempts lost with their worker
        self.exit_code: int | None = None
        self.worker: str | None = None  # worker of the latest attempt
        self.started_at: float | None = None  # start time of the latest attempt
        self.seconds: float | None = None
        self.reason = ""
        self.preds: set[str] = set(spec.after)
        self.succs: list[str] = []


class TaskTable:
    """The state of every task of one app. Not thread-safe: one owner (the coordinator)."""

    def __init__(self, tasks: Sequence[TaskSpec], *, max_losses: int = DEFAULT_MAX_LOSSES) -> None:
        if max_losses < 0:
            raise ValueError("max_losses must be >= 0")
        self._max_losses = max_losses
        self._tasks: dict[str, _Entry] = {}
        for spec in tasks:
            if spec.id in self._tasks:
                raise ValueError(f"duplicate task id {spec.id!r}")
            self._tasks[spec.id] = _Entry(spec)
        for e in self._tasks.values():
            for p in sorted(e.preds):
                if p not in self._tasks:
                    raise ValueError(f"task {e.spec.id!r} runs after unknown task {p!r}")
                self._tasks[p].succs.append(e.spec.id)
        for e in self._tasks.values():
            if not e.preds:
                self._move(e, TaskState.READY)

    # --- queries ---------------------------------------------------------------------------

    def ready(self) -> list[str]:
        """READY task ids, in spec order."""
        return [tid for tid, e in self._tasks.items() if e.state is TaskState.READY]

    def running_on(self, worker: str) -> list[Attempt]:
        """The attempts running on `worker`, in spec order."""
        return [
            Attempt(tid, e.attempts, worker)
            for tid, e in self._tasks.items()
            if e.state is TaskState.RUNNING and e.worker == worker
        ]

    def running(self) -> list[Attempt]:
        """Every running attempt, in spec order."""
        return [
            Attempt(tid, e.attempts, e.worker or "")
            for tid, e in self._tasks.items()
            if e.state is TaskState.RUNNING
        ]

    def spec(self, task_id: str) -> TaskSpec:
        return self._entry(task_id).spec

    def state(self, task_id: str) -> TaskState:
        return self._entry(task_id).state

    def counts(self) -> dict[TaskState, int]:
        """How many tasks are in each state (every state present, zeros included)."""
        out = dict.fromkeys(TaskState, 0)
        for e in self._tasks.values():
            out[e.state] += 1
        return out

    def finished(self) -> bool:
        """Every task is DONE or FAILED."""
        return all(e.state in TERMINAL_STATES for e in self._tasks.values())

    def any_failed(self) -> bool:
        return any(e.state is TaskState.FAILED for e in self._tasks.values())

    def record(self, task_id: str) -> TaskRecord:
        e = self._entry(task_id)
        return TaskRecord(
            id=task_id,
            state=e.state,
            attempts=e.attempts,
            exit_code=e.exit_code,
            worker=e.worker,
            seconds=e.seconds,
            reason=e.reason,
        )

    def records(self) -> list[TaskRecord]:
        """Every task's record, in spec order."""
        return [self.record(tid) for tid in self._tasks]

    # --- commands --------------------------------------------------------------------------

    def start(self, task_id: str, worker: str, now: float) -> Attempt:
        """READY -> RUNNING on `worker`; the new attempt. Raises IllegalTaskTransition otherwise."""
        e = self._entry(task_id)
        if e.state is not TaskState.READY:
            raise IllegalTaskTransition(f"cannot start task {task_id!r}: it is {e.state.value}")
        e.attempts += 1
        e.worker = worker
        e.started_at = now
        e.exit_code = None
        e.seconds = None
        self._move(e, TaskState.RUNNING)
        return Attempt(task_id, e.attempts, worker)

    def accepts(self, task_id: str, attempt: int, exit_code: int | None) -> bool:
        """Whether ``finish`` (``exit_code``) or ``abandon`` (None) of this attempt would be
        accepted now; nothing changes."""
        e = self._entry(task_id)
        if attempt != e.attempts or attempt < 1:
            return False
        if e.state is TaskState.RUNNING:
            return True
        return e.state is TaskState.READY and exit_code == 0

    def finish(
        self,
        task_id: str,
        attempt: int,
        *,
        exit_code: int,
        now: float,
        seconds: float | None = None,
        worker: str = "",
    ) -> bool:
        """Record attempt `attempt`'s exit; True if accepted (see the theory of operation).

        `seconds` is the attempt's run time as the worker measured it; by default
        `now` minus the attempt's start. `worker`, when given, is who ran it (a backend whose
        middleware places tasks learns it only at the end).
        """
        e = self._entry(task_id)
        if attempt != e.attempts or attempt < 1:
            return False
        late = e.state is TaskState.READY
        if not (e.state is TaskState.RUNNING or (late and exit_code == 0)):
            return False
        if worker:
            e.worker = worker
        e.exit_code = exit_code
        if seconds is None and e.started_at is not None:
            seconds = now - e.started_at
        e.seconds = seconds
        if exit_code == 0:
            self._move(e, TaskState.DONE)
            for s in e.succs:
                succ = self._tasks[s]
                if succ.state is TaskState.PENDING and all(
                    self._tasks[p].state is TaskState.DONE for p in succ.preds
                ):
                    self._move(succ, TaskState.READY)
            return True
        e.failures += 1
        if e.failures <= e.spec.retries:
            self._move(e, TaskState.READY)
        else:
            tries = "attempt" if e.attempts == 1 else "attempts"
            self._fail(e, f"exit code {exit_code} ({e.attempts} {tries})")
        return True

    def abandon(
        self,
        task_id: str,
        attempt: int,
        *,
        reason: str,
        counts_as_failure: bool,
        seconds: float | None = None,
    ) -> bool:
        """Give up on a running attempt (timeout: counts as a failure; worker lost: does not).

        RUNNING -> READY, or FAILED when out of retries (or lost more than `max_losses` times).
        False, changing nothing, unless `attempt` is the task's running attempt. `seconds`,
        when the worker reported it (a timeout), is recorded as the attempt's run time.
        """
        e = self._entry(task_id)
        if e.state is not TaskState.RUNNING or attempt != e.attempts:
            return False
        if seconds is not None:
            e.exit_code, e.seconds = None, seconds
        if counts_as_failure:
            e.failures += 1
            out = e.failures > e.spec.retries
        else:
            e.losses += 1
            out = e.losses > self._max_losses
        if out:
            self._fail(e, reason)
        else:
            self._move(e, TaskState.READY)
        return True

    def worker_lost(self, worker: str) -> list[Attempt]:
        """Abandon (not counting as failures) every attempt running on `worker`; those attempts."""
        lost = self.running_on(worker)
        for a in lost:
            self.abandon(a.task, a.attempt, reason=f"worker {worker} lost", counts_as_failure=False)
        return lost

    def give_up(self, task_id: str, reason: str) -> None:
        """A READY task nobody can run (e.g. no volunteer fits it): FAILED, with successors."""
        e = self._entry(task_id)
        if e.state is not TaskState.READY:
            raise IllegalTaskTransition(f"task {task_id!r}: give_up while {e.state.value}")
        self._fail(e, reason)

    def cancel(self, reason: str) -> None:
        """Every task not yet DONE or FAILED becomes FAILED with `reason`."""
        for e in self._tasks.values():
            if e.state not in TERMINAL_STATES:
                e.reason = reason
                self._move(e, TaskState.FAILED)

    # --- internals -------------------------------------------------------------------------

    def _entry(self, task_id: str) -> _Entry:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise KeyError(f"unknown task {task_id!r}") from None

    def _move(self, e: _Entry, new: TaskState) -> None:
        if new not in ALLOWED_TRANSITIONS[e.state]:  # pragma: no cover - a bug in this file
            raise IllegalTaskTransition(f"task {e.spec.id!r}: {e.state.value} -> {new.value}")
        e.state = new

    def _fail(self, e: _Entry, reason: str) -> None:
        """Fail `e` and, transitively, every successor not yet terminal."""
        e.reason = reason
        self._move(e, TaskState.FAILED)
        stack = list(e.succs)
        while stack:
            s = self._tasks[stack.pop()]
            if s.state in TERMINAL_STATES:
                continue
            s.reason = f"dependency {e.spec.id} failed"
            self._move(s, TaskState.FAILED)
            stack.extend(s.succs)
