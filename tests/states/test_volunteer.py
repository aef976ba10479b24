"""Every transition of the volunteer machine, legal and illegal; proofs and lease caps."""

from __future__ import annotations

import pytest

from bonjourgrid.states.volunteer import (
    Accepted,
    Activate,
    Expire,
    IllegalTransition,
    Refused,
    Release,
    Renew,
    Reserve,
    Volunteer,
    VolunteerState,
)

IDLE, RESERVED, WORKER = VolunteerState.IDLE, VolunteerState.RESERVED, VolunteerState.WORKER


def R(app: str, coord: str, term: int, until: float, *, proven: bool = True) -> Reserve:
    """A proven Reserve at time 0 for a lease of ``until`` seconds."""
    return Reserve(app, coord, term, 0.0, until, proven)


def N(app: str, term: int, until: float) -> Renew:
    return Renew(app, term, 0.0, until)


def reserved(app: str = "a1", coord: str = "c1", term: int = 1, until: float = 10.0) -> Volunteer:
    v = Volunteer()
    assert v.handle(R(app, coord, term, until)) == Accepted(RESERVED)
    return v


def worker(**kw: object) -> Volunteer:
    v = reserved(**kw)  # type: ignore[arg-type]
    assert v.handle(Activate(v.assignment.app, v.assignment.term)) == Accepted(WORKER)  # type: ignore[union-attr]
    return v


def test_idle_reserve_accepts_and_advertises_worker() -> None:
    v = reserved()
    assert v.state is RESERVED and v.advertised == "worker"
    assert v.assignment is not None and v.assignment.coordinator == "c1"


def test_a_fresh_volunteer_is_idle_and_advertises_idle() -> None:
    v = Volunteer()
    assert v.state is IDLE and v.advertised == "idle" and v.assignment is None


@pytest.mark.parametrize("event", [Activate("a1", 1), N("a1", 1, 5.0), Release("a1", 1)])
def test_idle_rejects_events_of_a_reservation_it_does_not_hold(event: object) -> None:
    v = Volunteer()
    with pytest.raises(IllegalTransition):
        v.handle(event)  # type: ignore[arg-type]
    assert v.state is IDLE


def test_idle_expire_is_a_no_op() -> None:
    v = Volunteer()
    assert v.handle(Expire(100.0)) == Accepted(IDLE)


@pytest.mark.parametrize("make", [reserved, worker])
def test_busy_volunteer_refuses_a_rival_app(make: object) -> None:
    v = make()  # type: ignore[operator]
    before = (v.state, v.assignment)
    out = v.handle(R("other", "c2", 1, 20.0))
    assert isinstance(out, Refused) and "busy with app a1" in out.reason
    assert (v.state, v.assignment) == before


@pytest.mark.parametrize("make", [reserved, worker])
def test_same_term_other_coordinator_is_refused(make: object) -> None:
    v = make()  # type: ignore[operator]
    assert isinstance(v.handle(R("a1", "intruder", 1, 20.0)), Refused)
    assert v.assignment.coordinator == "c1"


@pytest.mark.parametrize("make", [reserved, worker])
def test_higher_term_re_homes_the_worker(make: object) -> None:
    v = make(term=1)  # type: ignore[operator]
    state = v.state
    assert v.handle(R("a1", "replica", 2, 30.0)) == Accepted(state)
    assert v.assignment.coordinator == "replica" and v.assignment.term == 2
    # the old coordinator is now fenced off
    assert isinstance(v.handle(N("a1", 1, 40.0)), Refused)
    assert isinstance(v.handle(Release("a1", 1)), Refused)
    assert isinstance(v.handle(R("a1", "c1", 1, 40.0)), Refused)
    assert v.state is state


def test_same_coordinator_reconnecting_keeps_reservation() -> None:
    v = worker()
    assert v.handle(R("a1", "c1", 1, 50.0)) == Accepted(WORKER)
    assert v.assignment is not None and v.assignment.lease_until == 50.0


def test_activate_moves_reserved_to_worker_and_is_idempotent() -> None:
    v = reserved()
    assert v.handle(Activate("a1", 1)) == Accepted(WORKER)
    assert v.handle(Activate("a1", 1)) == Accepted(WORKER)


@pytest.mark.parametrize("make", [reserved, worker])
def test_activate_for_another_app_or_stale_term_is_refused(make: object) -> None:
    v = make(term=3)  # type: ignore[operator]
    state = v.state
    assert isinstance(v.handle(Activate("zz", 3)), Refused)
    assert isinstance(v.handle(Activate("a1", 2)), Refused)
    assert v.state is state


@pytest.mark.parametrize("make", [reserved, worker])
def test_renew_extends_the_lease_and_never_shortens_it(make: object) -> None:
    v = make(until=10.0)  # type: ignore[operator]
    v.handle(N("a1", 1, 15.0))
    assert v.assignment.lease_until == 15.0
    v.handle(N("a1", 1, 12.0))
    assert v.assignment.lease_until == 15.0


@pytest.mark.parametrize("make", [reserved, worker])
def test_release_returns_to_idle(make: object) -> None:
    v = make()  # type: ignore[operator]
    assert v.handle(Release("a1", 1)) == Accepted(IDLE)
    assert v.assignment is None and v.advertised == "idle"


@pytest.mark.parametrize("make", [reserved, worker])
def test_release_of_another_app_is_refused(make: object) -> None:
    v = make()  # type: ignore[operator]
    assert isinstance(v.handle(Release("zz", 1)), Refused)
    assert v.state is not IDLE


@pytest.mark.parametrize("make", [reserved, worker])
def test_lease_expires_back_to_idle_only_when_due(make: object) -> None:
    v = make(until=10.0)  # type: ignore[operator]
    state = v.state
    assert v.handle(Expire(9.99)) == Accepted(state)
    assert v.handle(Expire(10.0)) == Accepted(IDLE)


def test_a_released_volunteer_can_serve_a_new_app() -> None:
    v = worker()
    v.handle(Release("a1", 1))
    assert v.handle(R("a2", "c2", 1, 5.0)) == Accepted(RESERVED)


def test_a_released_volunteer_remembers_the_highest_term_and_fences_older_ones() -> None:
    vol = Volunteer()
    vol.handle(R("app", "new-coord", 2, 100.0))
    vol.handle(Release("app", 2))
    out = vol.handle(R("app", "old-coord", 1, 100.0))
    assert isinstance(out, Refused) and out.fenced_by == 2
    assert vol.state is VolunteerState.IDLE
    assert isinstance(vol.handle(R("app", "new-coord", 2, 100.0)), Accepted)


def test_a_stale_heartbeat_is_refused_with_the_term_that_fences_it() -> None:
    vol = Volunteer()
    vol.handle(R("app", "old", 1, 100.0))
    vol.handle(R("app", "new", 2, 100.0))
    out = vol.handle(N("app", 1, 200.0))
    assert isinstance(out, Refused) and out.fenced_by == 2


def test_other_apps_are_not_fenced_by_a_term_seen_for_one_app() -> None:
    vol = Volunteer()
    vol.handle(R("a", "c", 5, 100.0))
    vol.handle(Release("a", 5))
    assert isinstance(vol.handle(R("b", "c", 1, 100.0)), Accepted)


def test_an_unproven_reservation_is_refused_from_idle() -> None:
    v = Volunteer()
    out = v.handle(R("a1", "c1", 1, 10.0, proven=False))
    assert isinstance(out, Refused) and "proof of coordination" in out.reason
    assert v.state is IDLE and v.highest_term("a1") == 0


@pytest.mark.parametrize("make", [reserved, worker])
def test_an_unproven_higher_term_does_not_re_home_the_worker(make: object) -> None:
    v = make(term=1)  # type: ignore[operator]
    before = (v.state, v.assignment)
    out = v.handle(R("a1", "rogue", 7, 100.0, proven=False))
    assert isinstance(out, Refused) and "re-homing" in out.reason and out.fenced_by == 0
    assert (v.state, v.assignment) == before and v.highest_term("a1") == 1
    # the real coordinator goes on: its heartbeats are still accepted
    assert v.handle(N("a1", 1, 20.0)) == Accepted(before[0])


def test_an_unproven_reconnect_of_the_same_coordinator_is_refused() -> None:
    v = worker(until=10.0)
    assert isinstance(v.handle(R("a1", "c1", 1, 50.0, proven=False)), Refused)
    assert v.assignment is not None and v.assignment.lease_until == 10.0


@pytest.mark.parametrize("make", [reserved, worker])
def test_a_message_with_a_higher_term_than_the_reservation_is_refused(make: object) -> None:
    v = make(term=2)  # type: ignore[operator]
    state = v.state
    for event in (N("a1", 3, 50.0), Activate("a1", 3), Release("a1", 3)):
        out = v.handle(event)
        assert isinstance(out, Refused) and "proven Reserve" in out.reason
    assert v.state is state and v.assignment is not None and v.assignment.term == 2


def test_a_lease_beyond_the_cap_is_clipped_to_it() -> None:
    v = Volunteer(max_lease=120.0)
    assert v.handle(Reserve("a1", "c1", 1, 1000.0, 10**9, True)) == Accepted(RESERVED)
    assert v.assignment is not None and v.assignment.lease_until == 1120.0
    v.handle(Renew("a1", 1, 1050.0, float(10**12)))
    assert v.assignment.lease_until == 1170.0
    assert v.handle(Expire(1170.0)) == Accepted(IDLE)


def test_a_negative_lease_grants_nothing() -> None:
    v = Volunteer()
    v.handle(Reserve("a1", "c1", 1, 5.0, -100.0, True))
    assert v.assignment is not None and v.assignment.lease_until == 5.0
