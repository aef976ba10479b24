"""Every transition of the per-app coordinator role, legal and illegal."""

from __future__ import annotations

import pytest

from bonjourgrid.states.coordinator import (
    AllTasksTerminal,
    AppEnded,
    Cancel,
    CoordinatorLost,
    CoordinatorRole,
    GridFailed,
    Role,
    TakeoverDone,
    TermSeen,
    WorkerStaged,
)
from bonjourgrid.states.volunteer import IllegalTransition


def at(role: Role, term: int = 1) -> CoordinatorRole:
    """A role driven into ``role`` through legal transitions only."""
    if role is Role.STANDBY:
        return CoordinatorRole("a", role=Role.STANDBY, term=term)
    if role is Role.TAKING_OVER:
        r = at(Role.STANDBY, term)
        r.handle(CoordinatorLost())
        return r
    r = CoordinatorRole("a", term=term)
    path: dict[Role, list[object]] = {
        Role.RECRUITING: [],
        Role.RUNNING: [WorkerStaged()],
        Role.FINISHED: [WorkerStaged(), AllTasksTerminal()],
        Role.CANCELLED: [Cancel("user")],
        Role.FAILED: [GridFailed("no volunteers")],
        Role.STEPPED_DOWN: [TermSeen(term + 1)],
    }
    for ev in path[role]:
        r.handle(ev)  # type: ignore[arg-type]
    assert r.role is role
    return r


def test_roles_start_only_as_submitter_or_replica() -> None:
    with pytest.raises(ValueError):
        CoordinatorRole("a", role=Role.RUNNING)


def test_submitter_recruits_then_runs_then_finishes() -> None:
    r = CoordinatorRole("a")
    assert r.role is Role.RECRUITING and r.term == 1 and r.coordinating
    assert r.handle(WorkerStaged()) is Role.RUNNING
    assert r.handle(WorkerStaged()) is Role.RUNNING
    assert r.handle(AllTasksTerminal()) is Role.FINISHED and r.ended


@pytest.mark.parametrize("role", [Role.RECRUITING, Role.RUNNING, Role.TAKING_OVER])
def test_coordinating_roles_can_be_cancelled_failed_or_finished(role: Role) -> None:
    assert at(role).handle(Cancel("user")) is Role.CANCELLED
    r = at(role)
    assert r.handle(GridFailed("no suitable volunteers")) is Role.FAILED
    assert r.reason == "no suitable volunteers"
    assert at(role).handle(AllTasksTerminal()) is Role.FINISHED


@pytest.mark.parametrize("role", [Role.RECRUITING, Role.RUNNING, Role.TAKING_OVER])
def test_a_higher_term_makes_a_coordinator_step_down(role: Role) -> None:
    r = at(role)
    mine = r.term
    assert r.handle(TermSeen(mine)) is role  # its own term: nothing happens
    assert r.handle(TermSeen(mine - 1)) is role  # a stale term: nothing happens
    assert r.handle(TermSeen(mine + 1)) is Role.STEPPED_DOWN
    assert r.term == mine + 1 and not r.coordinating


def test_replica_takes_over_with_the_next_term() -> None:
    r = at(Role.STANDBY, term=4)
    assert not r.coordinating
    assert r.handle(CoordinatorLost()) is Role.TAKING_OVER and r.term == 5 and r.coordinating
    assert r.handle(TakeoverDone()) is Role.RUNNING


def test_replica_follows_higher_terms_without_acting() -> None:
    r = at(Role.STANDBY, term=2)
    assert r.handle(TermSeen(7)) is Role.STANDBY and r.term == 7
    assert r.handle(TermSeen(3)) is Role.STANDBY and r.term == 7


@pytest.mark.parametrize("outcome", [Role.FINISHED, Role.CANCELLED, Role.FAILED])
def test_replica_ends_with_the_coordinators_outcome(outcome: Role) -> None:
    assert at(Role.STANDBY).handle(AppEnded(outcome)) is outcome


def test_replica_refuses_a_non_final_outcome() -> None:
    r = at(Role.STANDBY)
    with pytest.raises(IllegalTransition):
        r.handle(AppEnded(Role.RUNNING))
    assert r.role is Role.STANDBY


ILLEGAL = [
    (Role.RECRUITING, CoordinatorLost()),
    (Role.RECRUITING, TakeoverDone()),
    (Role.RECRUITING, AppEnded(Role.FINISHED)),
    (Role.RUNNING, CoordinatorLost()),
    (Role.RUNNING, TakeoverDone()),
    (Role.TAKING_OVER, CoordinatorLost()),
    (Role.STANDBY, WorkerStaged()),
    (Role.STANDBY, AllTasksTerminal()),
    (Role.STANDBY, TakeoverDone()),
    (Role.STANDBY, GridFailed("x")),
    *[
        (ended, ev)
        for ended in (Role.FINISHED, Role.CANCELLED, Role.FAILED, Role.STEPPED_DOWN)
        for ev in (WorkerStaged(), AllTasksTerminal(), Cancel("x"), CoordinatorLost())
    ],
]


@pytest.mark.parametrize(("role", "event"), ILLEGAL)
def test_illegal_events_raise_and_change_nothing(role: Role, event: object) -> None:
    r = at(role)
    term = r.term
    with pytest.raises(IllegalTransition):
        r.handle(event)  # type: ignore[arg-type]
    assert (r.role, r.term) == (role, term)


@pytest.mark.parametrize("role", [Role.FINISHED, Role.CANCELLED, Role.FAILED, Role.STEPPED_DOWN])
def test_ended_roles_ignore_terms(role: Role) -> None:
    assert at(role).handle(TermSeen(99)) is role
