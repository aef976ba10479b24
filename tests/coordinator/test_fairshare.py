"""Fair share between rival coordinators: the split, when to recruit, when to release."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from bonjourgrid.coordinator.fairshare import (
    Claim,
    choose_release,
    recruit_cap,
    release_count,
    share_of,
    shares,
)

claims_st = st.lists(
    st.builds(
        Claim,
        app=st.text("abcdefgh", min_size=1, max_size=3),
        held=st.integers(0, 20),
        demand=st.integers(0, 20),
        weight=st.integers(1, 4),
    ),
    max_size=6,
    unique_by=lambda c: c.app,
)


@given(claims_st, st.integers(0, 40))
def test_shares_never_exceed_the_machines_nor_what_each_wants(claims, machines):
    split = shares(claims, machines)
    assert sum(split.values()) == min(machines, sum(c.wants for c in claims))
    assert all(0 <= split[c.app] <= c.wants for c in claims)


@given(claims_st, st.integers(0, 40))
def test_no_one_is_above_share_while_another_below_share_wants_more(claims, machines):
    split = shares(claims, machines)
    for j in claims:
        if split[j.app] < j.wants:  # j would take more
            for i in claims:
                assert Fraction(split[i.app], i.weight) <= Fraction(split[j.app] + 1, j.weight)


@given(claims_st, st.integers(0, 40))
def test_uncontended_claims_get_what_they_want_and_release_nothing(claims, machines):
    if sum(c.wants for c in claims) > machines:
        return
    assert shares(claims, machines) == {c.app: c.wants for c in claims}
    for c in claims:
        assert release_count(c, claims, machines, idle_machines=0) == 0


@given(claims_st, st.integers(0, 40), st.integers(0, 10))
def test_a_coordinator_never_releases_below_its_share(claims, machines, idle):
    for c in claims:
        n = release_count(c, claims, machines, idle)
        assert 0 <= n <= max(0, c.held - share_of(c, claims, machines))


def test_one_app_holding_every_machine_gives_two_rivals_their_equal_share():
    a = Claim("a", held=6, demand=40)
    b, c = Claim("b", held=0, demand=30), Claim("c", held=0, demand=30)
    assert shares([a, b, c], 6) == {"a": 2, "b": 2, "c": 2}
    assert release_count(a, [b, c], 6, idle_machines=0) == 4
    assert recruit_cap(a, [b, c], 6) == 2
    assert recruit_cap(b, [a, c], 6) == 2


def test_idle_volunteers_are_taken_before_anyone_releases():
    a, b = Claim("a", held=4, demand=10), Claim("b", held=0, demand=10)
    assert release_count(a, [b], 6, idle_machines=3) == 0
    assert release_count(a, [b], 6, idle_machines=2) == 1


def test_weights_split_in_proportion():
    a, b = Claim("a", held=0, demand=50, weight=2), Claim("b", held=0, demand=50, weight=1)
    assert shares([a, b], 9) == {"a": 6, "b": 3}


def test_the_odd_machine_stays_with_whoever_holds_it():
    a, b = Claim("a", held=1, demand=9), Claim("b", held=4, demand=9)
    assert shares([a, b], 5) == {"a": 2, "b": 3}
    assert release_count(b, [a], 5, idle_machines=0) == 1


def test_a_rival_that_wants_nothing_more_leaves_its_machines_to_others():
    a, b = Claim("a", held=1, demand=0), Claim("b", held=5, demand=10)
    assert recruit_cap(b, [a], 6) == 5
    assert release_count(b, [a], 6, idle_machines=0) == 0


def test_my_own_record_among_the_rivals_is_ignored():
    me = Claim("a", held=3, demand=3)
    assert share_of(me, [Claim("a", held=0, demand=0)], 6) == 6


def test_release_picks_idle_workers_in_order_and_keeps_journal_keepers():
    assert choose_release(["n1", "n2", "n3"], 2, keep={"n1"}) == ["n2", "n3"]
    assert choose_release(["n1"], 0) == []


@given(
    st.lists(st.integers(1, 3), min_size=2, max_size=5),
    st.integers(2, 30),
    st.randoms(use_true_random=False),
)
def test_coordinators_following_the_rules_converge_to_their_shares(weights, machines, rnd):
    """Rounds in a random order: each coordinator releases what the rules say (its workers are
    idle between tasks), then recruits idle machines up to its cap. From one holding all."""
    apps = [f"a{i}" for i in range(len(weights))]
    held = {a: 0 for a in apps}
    held[apps[0]] = machines
    want = 10 * machines

    def claims() -> list[Claim]:
        return [
            Claim(a, held[a], max(0, want - held[a]), w) for a, w in zip(apps, weights, strict=True)
        ]

    for _ in range(3 * len(apps)):
        order = apps[:]
        rnd.shuffle(order)
        for a in order:
            me = next(c for c in claims() if c.app == a)
            idle = machines - sum(held.values())
            held[a] -= release_count(me, claims(), machines, idle)
            me = next(c for c in claims() if c.app == a)
            idle = machines - sum(held.values())
            held[a] += max(0, min(idle, recruit_cap(me, claims(), machines) - held[a]))
    assert held == shares(claims(), machines)
