"""The quorum rules (faulttolerance/quorum.py): sizes, commits, votes, one-member set changes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonjourgrid.faulttolerance.quorum import (
    Members,
    Position,
    Voter,
    election_quorum,
    next_members,
    write_quorum,
)

# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "w", "e"), [(0, 0, 1), (1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 2, 3), (5, 3, 3)]
)
def test_quorum_sizes(k: int, w: int, e: int) -> None:
    assert (write_quorum(k), election_quorum(k)) == (w, e)


@given(st.integers(min_value=1, max_value=50))
def test_every_election_meets_every_commit_and_no_two_elections_miss(k: int) -> None:
    assert write_quorum(k) + election_quorum(k) > k
    assert 2 * election_quorum(k) > k


# --- commits ----------------------------------------------------------------------------------


def test_a_commit_needs_a_write_quorum_of_the_set() -> None:
    m = Members(2, ("a", "b", "c"))
    assert not m.durable({"a": 5}, 5)
    assert not m.durable({"a": 5, "b": 4}, 5)
    assert m.durable({"a": 5, "b": 7}, 5)
    assert Members(2, ("a", "b")).durable({"b": 5}, 5)  # k=2: W=1


def test_an_empty_set_commits_at_once_and_elects_no_one() -> None:
    assert Members().durable({}, 9)
    assert not Members().won({"a"})


def test_the_first_replica_added_can_take_over_while_the_change_is_still_joint() -> None:
    adding = Members().change(("a",))
    assert adding.joint and adding.sets() == ((), ("a",))
    assert adding.won({"a"})  # the coordinator died before it confirmed the change
    assert not adding.won({"b"})
    # the last member removed may have agreed to it, and the coordinator moved on without it
    assert not Members(2, ("a",)).change(()).won({"a"})
    assert not adding.durable({}, 1) and adding.durable({"a": 1}, 1)


def test_while_a_change_is_joint_a_commit_needs_both_sets() -> None:
    m = Members(2, ("a", "b")).change(("a", "b", "c"))
    assert m.joint and m.sets() == (("a", "b"), ("a", "b", "c"))
    assert not m.durable({"a": 3}, 3)  # W({a,b})=1 but W({a,b,c})=2
    assert m.durable({"a": 3, "c": 3}, 3)


def test_a_coordinator_cut_off_from_its_set_commits_nothing() -> None:
    """k=2, the coordinator reaches neither replica: every entry stays uncommitted, and the
    change that would refill the set from its side is never agreed."""
    m = Members(2, ("a", "b"))
    assert not m.durable({}, 1)
    refill = m.change(("a",))
    assert not refill.agreed({"x": 9})
    assert not refill.durable({"x": 9}, 1)


# --- set changes --------------------------------------------------------------------------------


def test_a_change_is_one_member_and_one_at_a_time() -> None:
    m = Members(2, ("a", "b"))
    with pytest.raises(ValueError):
        m.change(("c", "d"))  # two members swapped
    with pytest.raises(ValueError):
        m.change(("a", "b"))  # no change
    joint = m.change(("a",))
    with pytest.raises(ValueError):
        joint.change(("a", "c"))  # the first one is not confirmed yet
    assert joint.confirm() == Members(4, ("a",))


def test_a_change_is_agreed_by_write_quorums_of_the_old_and_the_new_set() -> None:
    m = Members(2, ("a", "b", "c")).change(("a", "b"))  # version 3
    assert not m.agreed({"a": 3})  # W({a,b,c}) = 2
    assert m.agreed({"a": 3, "b": 3})
    assert not m.agreed({"a": 2, "b": 2})  # acks of the set before the change


def test_a_member_that_holds_nothing_agrees_to_its_own_removal_only() -> None:
    m = Members(2, ("a",)).change(())
    assert not m.agreed({})
    assert m.agreed({}, empty={"a"})
    add = Members(2, ("a",)).change(("a", "b"))
    assert not add.agreed({"b": 3}, empty={"a"})  # a's emptiness does not add anyone


def test_next_members_replaces_a_lost_member_before_dropping_it() -> None:
    assert next_members(("a", "b"), ("a", "c")) == ("a", "b", "c")
    assert next_members(("a", "b", "c"), ("a", "c")) == ("a", "c")
    assert next_members(("a", "c"), ("a", "c")) is None
    assert next_members((), ("a", "b")) == ("a",)
    assert next_members(("a", "b"), ("a",)) == ("a",)  # no spare: shrink to the live ones


def test_next_members_drops_a_member_that_holds_nothing_first() -> None:
    """k=1 with its replica restarted: only its own removal can be agreed (it counts for it),
    so it goes before a replacement is added."""
    assert next_members(("x",), ("b",), empty={"x"}) == ()
    assert next_members(("x",), ("b",)) == ()  # lost, maybe not empty yet: same order
    assert next_members((), ("b",), empty={"x"}) == ("b",)


@given(
    st.lists(st.sampled_from("abcdefg"), unique=True, max_size=4),
    st.lists(st.sampled_from("abcdefg"), unique=True, max_size=4),
    st.sets(st.sampled_from("abcdefg")),
)
def test_next_members_reaches_any_set_by_one_member_changes(
    start: list[str], goal: list[str], empty: set[str]
) -> None:
    goal = [n for n in goal if n not in empty]
    m = Members(0, tuple(start))
    for _ in range(12):
        step = next_members(m.nodes, goal, empty)
        if step is None:
            break
        m = m.change(step).confirm()  # raises unless a one-member change
    assert set(m.nodes) == set(goal)


@given(st.integers(min_value=1, max_value=5), st.data())
def test_an_agreed_change_meets_every_election_of_the_old_set(k: int, data: st.DataObject) -> None:
    """A candidate that missed an agreed change cannot gather the old set's election quorum
    without a voter that holds the change (that voter refuses it: its journal is ahead)."""
    old = tuple("abcdef"[:k])
    new = old[:-1] if k > 1 and data.draw(st.booleans()) else (*old, "z")
    m = Members(1, old).change(new)
    agreeing = data.draw(st.sets(st.sampled_from(old + new)))
    if not m.agreed({n: m.version for n in agreeing}):
        return
    for voters in itertools.combinations(old, election_quorum(len(old))):
        assert set(voters) & agreeing


# --- elections ----------------------------------------------------------------------------------


def test_an_election_needs_e_votes_of_every_set_in_force() -> None:
    assert Members(1, ("a",)).won({"a"})  # k=1: the replica alone
    assert not Members(1, ("a", "b")).won({"a"})  # k=2: both
    assert Members(1, ("a", "b")).won({"a", "b"})
    assert Members(1, ("a", "b", "c")).won({"a", "c"})
    joint = Members(1, ("a", "b", "c")).change(("a", "b"))
    assert not joint.won({"a", "c"})  # E of {a, b} needs b too
    assert joint.won({"a", "b"})


_HERE = Position(1, 5, 2)


def _ask(
    v: Voter,
    *,
    term: int = 2,
    candidate: str = "c",
    theirs: Position = _HERE,
    mine: Position = _HERE,
    silent: float = 2.0,
    campaigning: bool = False,
) -> tuple[Voter, str]:
    return v.vote(
        term=term,
        candidate=candidate,
        theirs=theirs,
        mine=mine,
        silent_for=silent,
        suspect_after=1.5,
        campaigning=campaigning,
    )


def test_a_voter_grants_once_per_term() -> None:
    v = Voter(1, "coord", 1)
    v2, why = _ask(v)
    assert why == "" and v2 == Voter(2, "c", 2)
    assert _ask(v2)[1] == ""  # the same candidate asking again
    assert _ask(v2, candidate="d")[1]  # another candidate, same term
    assert _ask(v2, term=3, candidate="d")[1] == ""


def test_a_voter_refuses_a_journal_behind_its_own() -> None:
    v = Voter(1, "coord", 1)
    assert "ahead" in _ask(v, theirs=Position(1, 4, 2))[1]
    assert "ahead" in _ask(v, theirs=Position(1, 5, 1))[1]  # missed a set change
    assert _ask(v, theirs=Position(2, 0, 0), mine=Position(1, 9, 9))[1] == ""  # later term


def test_a_voter_that_heard_its_coordinator_lately_refuses() -> None:
    """Pre-vote flavour: a replica cut off alone finds no voter, so it deposes no one."""
    v = Voter(1, "coord", 1)
    v2, why = _ask(v, silent=0.4)
    assert "heard" in why and v2 == v


def test_a_voter_refuses_a_term_it_has_passed() -> None:
    assert _ask(Voter(3, "x", 3), term=3)[1]
    assert _ask(Voter(1, "x", 4), term=3)[1]  # it voted in 4 (for itself)


def test_after_granting_a_term_the_old_coordinators_stream_is_refused() -> None:
    v, _ = _ask(Voter(1, "coord", 1))
    assert not v.accepts(1, "coord")
    assert v.accepts(2, "c")
    assert not v.accepts(2, "other")  # the same term from someone else
    assert v.accepts(3, "other")


def test_a_candidate_gives_its_vote_to_a_better_one_once_its_own_ballot_is_over() -> None:
    """Replica r0 (journal behind) asked for term 2 and lost; r1 (ahead) asks for term 2:
    r0 grants it unless it is still counting its own votes, and then moves past term 2."""
    v, term = Voter(1, "coord", 1).candidacy()
    assert term == 2
    assert _ask(v, term=2, candidate="r1", campaigning=True)[1]
    v2, why = _ask(v, term=2, candidate="r1")
    assert why == "" and v2 == Voter(2, "r1", 2)
    assert v2.candidacy()[1] == 3


def test_a_candidacy_does_not_fence_the_coordinator() -> None:
    """A candidate votes for itself in the next term but still follows the old one until it
    wins: if it hears its coordinator meanwhile, nobody was deposed."""
    v, term = Voter(1, "coord", 1).candidacy()
    assert term == 2 and v.voted == 2
    assert v.accepts(1, "coord")
    assert _ask(v, term=2, candidate="d", campaigning=True)[1]  # it voted for itself in 2
    assert v.latest() == 2


def test_a_failed_candidacy_asks_for_its_term_again_unless_a_voter_is_past_it() -> None:
    """Voters that only refused (heard the coordinator lately, journal ahead) changed nothing,
    so asking the same term again keeps terms from climbing on every retry; a refusal that
    carries a term at or past ours (another candidate's) moves us past it."""
    v, term = Voter(1, "coord", 1).candidacy()
    assert v.candidacy()[1] == term == 2
    assert v.candidacy(above=1)[1] == 2
    assert v.candidacy(above=2)[1] == 3
    granted, _ = _ask(Voter(1, "coord", 1), term=2, candidate="c")
    assert granted.candidacy()[1] == 3  # it follows c in 2: its own candidacy is past it
