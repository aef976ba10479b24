"""The volunteer's state machine: Idle -> Reserved -> Worker -> Idle.

Theory of operation
-------------------
A volunteer serves at most one application of one coordinator at a time. A coordinator
reserves it with a lease (``Reserve``); the reservation is accepted only from Idle, which is
what makes "no machine ever serves two coordinators at once" a local, atomic decision. Once
the coordinator has staged the application the volunteer is a Worker (``Activate``). Every
heartbeat renews the lease (``Renew``); ``Release`` or an expired lease (``Expire``, checked
with the current time passed in) brings it back to Idle, so a dead coordinator never holds a
machine for longer than one lease.

Terms fence coordinators: a reservation carries the app's term; a replica that takes over an
app claims a higher term and re-homes the worker by reserving it again with that term (same
app, higher term: accepted, the coordinator changes). Anything from a lower term is stale and
refused. Terms are only ever learned over the authenticated control channel.

Reservations must be *proven* (``Reserve.proven``: the caller checked the app's CE-key proof
of coordination, app/ce_key.py): an unproven Reserve is refused from Idle, and a re-homing
(a higher term or another coordinator) without proof is refused while the worker keeps its
current coordinator. Any other message carrying a term above the reservation's is refused:
only a proven Reserve raises a worker's term. Leases are capped at ``max_lease`` seconds
(the volunteer's config): a longer one asked for is clipped to it.

Advertised state is two-valued (DESIGN.md): Reserved and Worker both advertise as "worker"
so no rival recruits a reserved machine.

This module does no I/O and reads no clock. An event that makes no sense in the current
state (e.g. ``Activate`` while Idle) raises ``IllegalTransition`` and changes nothing; a
legitimate request that must be declined (``Reserve`` while busy) returns a ``Refused``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

DEFAULT_MAX_LEASE = 120.0
"""Seconds a coordinator may hold this machine without renewing (``max_lease``): well above
any profile's ``reserve_lease`` (failover needs the lease to outlive an election), and short
enough that a coordinator asking for a week gets two minutes."""


class VolunteerState(str, Enum):
    IDLE = "idle"
    """Offered to the grid; may be reserved by any coordinator of the grid."""
    RESERVED = "reserved"
    """Accepted a reservation; waiting for the coordinator to stage its application."""
    WORKER = "worker"
    """Serving one application of one coordinator."""


class IllegalTransition(Exception):
    """An event that is meaningless in the current state; the state is unchanged."""


@dataclass(frozen=True)
class Reserve:
    app: str
    coordinator: str
    term: int
    now: float
    lease: float
    """Seconds asked for (clipped to the volunteer's ``max_lease``)."""
    proven: bool = False
    """The caller checked the app's proof of coordination for this (app, term, coordinator)."""


@dataclass(frozen=True)
class Activate:
    app: str
    term: int


@dataclass(frozen=True)
class Renew:
    app: str
    term: int
    now: float
    lease: float


@dataclass(frozen=True)
class Release:
    app: str
    term: int


@dataclass(frozen=True)
class Expire:
    now: float


Event = Reserve | Activate | Renew | Release | Expire


@dataclass(frozen=True)
class Accepted:
    state: VolunteerState


@dataclass(frozen=True)
class Refused:
    reason: str
    fenced_by: int = 0
    """When the refusal is a stale term: the higher term this machine has seen for the app
    (the asker learns it coordinates no more, and steps down)."""


Outcome = Accepted | Refused


@dataclass(frozen=True)
class Assignment:
    """Whom the volunteer serves while Reserved or Worker."""

    app: str
    coordinator: str
    term: int
    lease_until: float


class Volunteer:
    """One machine's volunteer state. Not thread-safe: drive it from one event loop."""

    def __init__(self, max_lease: float = DEFAULT_MAX_LEASE) -> None:
        self.max_lease = max_lease
        self._state = VolunteerState.IDLE
        self._assignment: Assignment | None = None
        self._terms: dict[str, int] = {}
        """The highest term seen per app, kept after the machine is released: a coordinator
        cut off by a partition must not recruit with an old term once a newer one exists."""

    def highest_term(self, app: str) -> int:
        return self._terms.get(app, 0)

    @property
    def state(self) -> VolunteerState:
        return self._state

    @property
    def assignment(self) -> Assignment | None:
        return self._assignment

    @property
    def advertised(self) -> str:
        """The one service type the machine publishes: ``idle`` or ``worker``."""
        return "idle" if self._state is VolunteerState.IDLE else "worker"

    def handle(self, event: Event) -> Outcome:
        handler = _TRANSITIONS[self._state].get(type(event))
        if handler is None:
            raise IllegalTransition(f"{type(event).__name__} is illegal while {self._state.value}")
        return handler(self, event)

    # --- transitions -------------------------------------------------------------------

    def _reserve_from_idle(self, ev: Event) -> Outcome:
        assert isinstance(ev, Reserve)
        seen = self._terms.get(ev.app, 0)
        if ev.term < seen:
            return Refused(f"stale term {ev.term} < {seen}", seen)
        if not ev.proven:
            return Refused(f"reservation of app {ev.app} without a valid proof of coordination")
        self._seen(ev.app, ev.term)
        self._assignment = Assignment(ev.app, ev.coordinator, ev.term, self._until(ev))
        self._state = VolunteerState.RESERVED
        return Accepted(self._state)

    def _reserve_when_busy(self, ev: Event) -> Outcome:
        assert isinstance(ev, Reserve) and self._assignment is not None
        a = self._assignment
        if ev.app != a.app:
            return Refused(f"busy with app {a.app}")
        if ev.term < a.term:
            return Refused(f"stale term {ev.term} < {a.term}", a.term)
        if ev.term == a.term and ev.coordinator != a.coordinator:
            return Refused(f"app {a.app} term {a.term} belongs to {a.coordinator}")
        if not ev.proven:
            if ev.term > a.term:
                return Refused(
                    f"re-homing app {a.app} to term {ev.term} needs the app's proof of "
                    f"coordination; staying with {a.coordinator} (term {a.term})"
                )
            return Refused(f"reservation of app {ev.app} without a valid proof of coordination")
        # Same app, same or higher term, proven: a reconnecting coordinator or a takeover.
        self._seen(ev.app, ev.term)
        self._assignment = Assignment(ev.app, ev.coordinator, ev.term, self._until(ev))
        return Accepted(self._state)

    def _activate(self, ev: Event) -> Outcome:
        assert isinstance(ev, Activate)
        refusal = self._check_current(ev.app, ev.term)
        if refusal:
            return refusal
        self._state = VolunteerState.WORKER
        return Accepted(self._state)

    def _activate_again(self, ev: Event) -> Outcome:
        assert isinstance(ev, Activate)
        return self._check_current(ev.app, ev.term) or Accepted(self._state)

    def _renew(self, ev: Event) -> Outcome:
        assert isinstance(ev, Renew) and self._assignment is not None
        refusal = self._check_current(ev.app, ev.term)
        if refusal:
            return refusal
        a = self._assignment
        self._assignment = Assignment(
            a.app, a.coordinator, a.term, max(a.lease_until, self._until(ev))
        )
        return Accepted(self._state)

    def _release(self, ev: Event) -> Outcome:
        assert isinstance(ev, Release)
        refusal = self._check_current(ev.app, ev.term)
        if refusal:
            return refusal
        self._to_idle()
        return Accepted(self._state)

    def _expire(self, ev: Event) -> Outcome:
        assert isinstance(ev, Expire) and self._assignment is not None
        if ev.now >= self._assignment.lease_until:
            self._to_idle()
        return Accepted(self._state)

    def _expire_idle(self, ev: Event) -> Outcome:
        return Accepted(self._state)

    # --- helpers -----------------------------------------------------------------------

    def _check_current(self, app: str, term: int) -> Refused | None:
        a = self._assignment
        assert a is not None
        if app != a.app:
            return Refused(f"not serving app {app} (serving {a.app})")
        if term < a.term:
            return Refused(f"stale term {term} < {a.term}", a.term)
        if term > a.term:
            return Refused(
                f"term {term} is above the reservation's term {a.term}: only a proven "
                "Reserve re-homes this worker"
            )
        return None

    def clipped(self, lease: float) -> float:
        """The lease granted for ``lease`` seconds asked (at most ``max_lease``)."""
        return min(max(0.0, lease), self.max_lease)

    def _until(self, ev: Reserve | Renew) -> float:
        return ev.now + self.clipped(ev.lease)

    _MAX_TERMS = 4096

    def _seen(self, app: str, term: int) -> None:
        if term > self._terms.get(app, 0):
            self._terms.pop(app, None)
            self._terms[app] = term
            if len(self._terms) > self._MAX_TERMS:  # forget the apps seen longest ago
                del self._terms[next(iter(self._terms))]

    def _to_idle(self) -> None:
        self._state = VolunteerState.IDLE
        self._assignment = None


_Handler = Callable[[Volunteer, Event], Outcome]

# TRANSITIONS[state][event type] -> handler. A missing entry is an illegal event.
_TRANSITIONS: dict[VolunteerState, dict[type, _Handler]] = {
    VolunteerState.IDLE: {
        Reserve: Volunteer._reserve_from_idle,
        Expire: Volunteer._expire_idle,
    },
    VolunteerState.RESERVED: {
        Reserve: Volunteer._reserve_when_busy,
        Activate: Volunteer._activate,
        Renew: Volunteer._renew,
        Release: Volunteer._release,
        Expire: Volunteer._expire,
    },
    VolunteerState.WORKER: {
        Reserve: Volunteer._reserve_when_busy,
        Activate: Volunteer._activate_again,
        Renew: Volunteer._renew,
        Release: Volunteer._release,
        Expire: Volunteer._expire,
    },
}
