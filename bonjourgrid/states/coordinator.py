"""The per-application coordinator role: who runs an app, with which term, and how it ends.

Theory of operation
-------------------
Every machine that holds an application holds one ``CoordinatorRole`` for it. The submitting
machine starts it as ``RECRUITING`` with term 1; it becomes ``RUNNING`` once at least one
worker has the app staged, and ends ``FINISHED`` (every task terminal), ``CANCELLED`` (the user
or a rival with authority said so) or ``FAILED`` (the grid could not run it: no suitable
volunteers, or it lost its coordinator with no replica).

A replica starts as ``STANDBY`` with the coordinator's term. When the coordinator is lost
(heartbeat silence, or an mDNS goodbye with no "app ended" message before it) the elected
replica moves to ``TAKING_OVER`` with term + 1, then to ``RUNNING`` once it has re-homed the
workers: takeover is a transition of this machine, not a bolt-on.

Terms settle disputes (as memberlist's incarnation numbers do): whoever sees a higher term
than its own for the same app while coordinating steps down (``STEPPED_DOWN``) and hands
over what it holds; a replica that sees a higher term simply follows it. Wall clocks never
decide anything.

Pure: no I/O, no clock. Illegal events raise ``IllegalTransition`` and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bonjourgrid.states.volunteer import IllegalTransition


class Role(str, Enum):
    RECRUITING = "recruiting"
    """Coordinating; looking for workers, none staged yet."""
    RUNNING = "running"
    """Coordinating with at least one staged worker."""
    STANDBY = "standby"
    """A replica: holds the journal, watches the coordinator, acts only when elected."""
    TAKING_OVER = "taking-over"
    """An elected replica that has claimed term + 1 and is re-homing workers."""
    STEPPED_DOWN = "stepped-down"
    """Saw a higher term while coordinating; hands over and stops acting."""
    FINISHED = "finished"
    """Every task reached a terminal state."""
    CANCELLED = "cancelled"
    """Stopped on request; machines released."""
    FAILED = "failed"
    """The grid could not run the app (no suitable volunteers, coordinator lost)."""


ENDED_ROLES = frozenset({Role.FINISHED, Role.CANCELLED, Role.FAILED, Role.STEPPED_DOWN})
COORDINATING_ROLES = frozenset({Role.RECRUITING, Role.RUNNING, Role.TAKING_OVER})


@dataclass(frozen=True)
class WorkerStaged:
    """A recruited worker has the application staged."""


@dataclass(frozen=True)
class AllTasksTerminal:
    pass


@dataclass(frozen=True)
class Cancel:
    reason: str


@dataclass(frozen=True)
class GridFailed:
    reason: str


@dataclass(frozen=True)
class CoordinatorLost:
    """A replica was elected after losing the coordinator."""


@dataclass(frozen=True)
class TakeoverDone:
    pass


@dataclass(frozen=True)
class TermSeen:
    term: int


@dataclass(frozen=True)
class AppEnded:
    """A replica heard the coordinator say the app ended."""

    outcome: Role


Event = (
    WorkerStaged
    | AllTasksTerminal
    | Cancel
    | GridFailed
    | CoordinatorLost
    | TakeoverDone
    | TermSeen
    | AppEnded
)


class CoordinatorRole:
    def __init__(self, app: str, *, role: Role = Role.RECRUITING, term: int = 1) -> None:
        if role not in (Role.RECRUITING, Role.STANDBY):
            raise ValueError("a role starts as RECRUITING (submitter) or STANDBY (replica)")
        self.app = app
        self._role: Role = role
        self._term = term
        self.reason = ""

    @classmethod
    def restored(cls, app: str, role: Role, term: int, reason: str = "") -> CoordinatorRole:
        """The role as a journal recorded it (a restarted daemon reading its apps back)."""
        r = cls(app, role=Role.STANDBY, term=term)
        r._role = role
        r.reason = reason
        return r

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def coordinating(self) -> bool:
        return self._role in COORDINATING_ROLES

    @property
    def ended(self) -> bool:
        return self._role in ENDED_ROLES

    def handle(self, event: Event) -> Role:
        handler = _TRANSITIONS[self._role].get(type(event))
        if handler is None:
            raise IllegalTransition(f"{type(event).__name__} is illegal while {self._role.value}")
        handler(self, event)
        return self._role

    # --- transitions -------------------------------------------------------------------

    def _staged(self, ev: Event) -> None:
        self._role = Role.RUNNING

    def _stay(self, ev: Event) -> None:
        pass

    def _finish(self, ev: Event) -> None:
        self._role = Role.FINISHED

    def _cancel(self, ev: Event) -> None:
        assert isinstance(ev, Cancel)
        self.reason = ev.reason
        self._role = Role.CANCELLED

    def _fail(self, ev: Event) -> None:
        assert isinstance(ev, GridFailed)
        self.reason = ev.reason
        self._role = Role.FAILED

    def _elected(self, ev: Event) -> None:
        self._term += 1
        self._role = Role.TAKING_OVER

    def _took_over(self, ev: Event) -> None:
        self._role = Role.RUNNING

    def _term_while_coordinating(self, ev: Event) -> None:
        assert isinstance(ev, TermSeen)
        if ev.term > self._term:
            self._term = ev.term
            self.reason = f"a higher term ({ev.term}) coordinates this app"
            self._role = Role.STEPPED_DOWN

    def _term_while_standby(self, ev: Event) -> None:
        assert isinstance(ev, TermSeen)
        self._term = max(self._term, ev.term)

    def _replica_heard_end(self, ev: Event) -> None:
        assert isinstance(ev, AppEnded)
        if ev.outcome not in (Role.FINISHED, Role.CANCELLED, Role.FAILED):
            raise IllegalTransition(f"an app cannot end as {ev.outcome.value}")
        self._role = ev.outcome


_Handler = Callable[[CoordinatorRole, Event], None]

_COORDINATING: dict[type, _Handler] = {
    AllTasksTerminal: CoordinatorRole._finish,
    Cancel: CoordinatorRole._cancel,
    GridFailed: CoordinatorRole._fail,
    TermSeen: CoordinatorRole._term_while_coordinating,
}

# TRANSITIONS[role][event type] -> handler. A missing entry is an illegal event.
_TRANSITIONS: dict[Role, dict[type, _Handler]] = {
    Role.RECRUITING: {WorkerStaged: CoordinatorRole._staged, **_COORDINATING},
    Role.RUNNING: {WorkerStaged: CoordinatorRole._stay, **_COORDINATING},
    Role.TAKING_OVER: {
        TakeoverDone: CoordinatorRole._took_over,
        WorkerStaged: CoordinatorRole._stay,
        **_COORDINATING,
    },
    Role.STANDBY: {
        CoordinatorLost: CoordinatorRole._elected,
        TermSeen: CoordinatorRole._term_while_standby,
        AppEnded: CoordinatorRole._replica_heard_end,
        Cancel: CoordinatorRole._cancel,
    },
    Role.STEPPED_DOWN: {TermSeen: CoordinatorRole._stay},
    Role.FINISHED: {TermSeen: CoordinatorRole._stay},
    Role.CANCELLED: {TermSeen: CoordinatorRole._stay},
    Role.FAILED: {TermSeen: CoordinatorRole._stay},
}
