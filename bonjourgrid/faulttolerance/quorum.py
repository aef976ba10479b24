"""Quorums over an app's replica set: when a result is committed, who may take over, and how
the set itself changes. Pure: no I/O, time passed in. The product (engine/replica_set.py and
engine/replica.py, in the daemon's shells) and the simulation tier (bonjourgrid/sim) both
decide with these functions, so the simulator checks the product's own rules.

Theory of operation (Raft's quorums, with a pre-vote flavour):

* A replica set of ``n`` members (``n`` = app.json ``replicas`` in the steady state). A journal
  entry is **committed** once ``W = ceil(n/2)`` members acknowledged it at the coordinator's
  current term (a coordinator that is itself a member counts its own copy). Only then is a
  result acknowledged to its worker; with fewer members reachable the coordinator commits
  nothing and the workers keep their results.
* A replica **takes over** only with the votes of ``E = floor(n/2) + 1`` members of the set it
  knows, its own included. ``W + E > n``: every election meets every commit, so the winner's
  voters include one that holds every committed entry. ``2E > n``: two candidates never both win
  a term.
* A voter grants at most one vote per term, only for a term above any it follows, only to a
  candidate whose journal ``Position`` is at least its own, and only if it has itself not heard
  from the coordinator for ``suspect_after`` (so a replica cut off alone cannot depose a live
  coordinator). Having granted term ``t``, it refuses streams of lower terms; its refusal (with
  the higher term) makes the old coordinator step down.
* The set changes **one member at a time** (``next_members``), never while taking over (the
  members are not re-homed yet: a lost one is replaced before it is dropped), and every
  change is journaled
  like an entry: the change ``old -> new`` is in force at once but **joint** until agreed — a
  commit needs ``W`` of both sets, an election ``E`` of both — and it is agreed when ``W`` of
  the old set and ``W`` of the new one acknowledged it; the coordinator then confirms it
  (``Members.confirm``) and may start the next change. A coordinator cut off from its set
  cannot get a change agreed, so it never refills the set from its side of a partition.
  A member that answered that it holds nothing of the app (a restarted machine) counts as
  having agreed to its own removal: it can vote for no one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple


def write_quorum(members: int) -> int:
    """``W``: acknowledgements that commit an entry in a set of ``members`` (0 for none)."""
    return (members + 1) // 2


def election_quorum(members: int) -> int:
    """``E``: votes, the candidate's own included, that win an election in a set of
    ``members``."""
    return members // 2 + 1


class Position(NamedTuple):
    """How far a journal goes: the term of the stream it was received in (the coordinator's
    term for the coordinator), its number of entries, and the version of the replica set it
    holds. Two copies are compared as tuples: within one term they are prefixes of the same
    stream, across terms the later term wins."""

    term: int
    seq: int
    members: int


@dataclass(frozen=True)
class Members:
    """A replica set as journaled: ``nodes`` best-ranked first, ``version`` counting changes,
    and ``old``, the set before the last change while that change is not yet confirmed."""

    version: int = 0
    nodes: tuple[str, ...] = ()
    old: tuple[str, ...] | None = None

    @property
    def joint(self) -> bool:
        return self.old is not None

    def sets(self) -> tuple[tuple[str, ...], ...]:
        """The sets whose quorums a commit or an election needs now."""
        return (self.nodes,) if self.old is None else (self.old, self.nodes)

    def everyone(self) -> tuple[str, ...]:
        """Every member of every set in force, in rank order."""
        extra = tuple(n for n in self.old or () if n not in self.nodes)
        return self.nodes + extra

    def durable(self, acked: Mapping[str, int], seq: int) -> bool:
        """Whether entry ``seq`` is committed, given each member's acknowledged entry count at
        the current term (a coordinator that is a member passes its own)."""
        return all(
            sum(1 for n in s if acked.get(n, 0) >= seq) >= write_quorum(len(s)) for s in self.sets()
        )

    def agreed(self, versions: Mapping[str, int], empty: Collection[str] = ()) -> bool:
        """Whether this (joint) change is acknowledged by ``W`` of the old set and ``W`` of the
        new one. ``versions``: the set version each member acknowledged at the current term;
        ``empty``: members that answered they hold nothing of the app (they count for their
        own removal only)."""
        if self.old is None:
            return True
        removed = set(self.old) - set(self.nodes)

        def ok(n: str) -> bool:
            return versions.get(n, -1) >= self.version or (n in removed and n in empty)

        return all(sum(1 for n in s if ok(n)) >= write_quorum(len(s)) for s in self.sets())

    def change(self, nodes: Sequence[str]) -> Members:
        """Propose the next set; it must differ by exactly one member, with no change open."""
        if self.old is not None:
            raise ValueError("a change is still open: confirm it first")
        new = tuple(nodes)
        if len(set(new)) != len(new):
            raise ValueError(f"duplicate member in {new}")
        if len(set(new) ^ set(self.nodes)) != 1:
            raise ValueError(f"{self.nodes} -> {new} is not a one-member change")
        return Members(self.version + 1, new, self.nodes)

    def confirm(self) -> Members:
        """The agreed change is final: only the new set counts from now on."""
        if self.old is None:
            return self
        return Members(self.version + 1, self.nodes, None)

    def won(self, grants: Collection[str]) -> bool:
        """Whether ``grants`` (the candidate included) hold ``E`` of every set in force.
        A set with no member elects no one, with one exception: while the first member is
        being added (``() -> (a,)``, joint), the empty old side asks for nothing. Every entry
        committed before the change reached ``a`` in its snapshot, ahead of the change, and
        the coordinator can neither confirm nor abandon the change without ``a``; so a
        coordinator lost at that moment must not leave ``a`` unable ever to take over. (The
        mirror case, the last member removed, gets no such exception: that member may have
        agreed to its removal, and the coordinator moved on without it.)"""
        sets = (self.nodes,) if self.old == () else self.sets()
        return all(
            len(s) > 0 and sum(1 for n in s if n in grants) >= election_quorum(len(s)) for s in sets
        )


def next_members(
    current: Sequence[str], wanted: Sequence[str], empty: Collection[str] = ()
) -> tuple[str, ...] | None:
    """The next one-member step from ``current`` toward ``wanted`` (None when there): drop
    a member that holds nothing first; in a set of two or more, add a wanted one while the set
    is no larger than ``wanted`` (a lost member is replaced before it is dropped, by the
    others' agreement alone); then drop the unwanted ones, ranked last first. A set of one
    drops its lost member first: only that one (or its proof that it holds nothing) can
    agree to any change of it."""
    gone = [n for n in current if n in empty and n not in wanted]
    if gone:
        return tuple(n for n in current if n != gone[-1])
    add = [n for n in wanted if n not in current]
    if add and 2 <= len(current) <= len(wanted):
        return (*current, add[0])
    drop = [n for n in current if n not in wanted]
    if drop:
        return tuple(n for n in current if n != drop[-1])
    if add:
        return (*current, add[0])
    return None


@dataclass(frozen=True)
class Voter:
    """One replica's election state for an app (persisted with it).

    ``term``/``leader``: the highest term this replica follows and whom it follows in it (the
    coordinator it takes the journal from, or the candidate it granted); ``voted``: the highest
    term it cast a vote in, its own candidacy included.
    """

    term: int = 0
    leader: str = ""
    voted: int = 0

    def accepts(self, term: int, coordinator: str) -> bool:
        """Whether a journal stream (snapshot, append, set change) of ``term`` from
        ``coordinator`` may be taken: a lower term, or the same term from another node, is
        refused (the refusal carries ``self.term``)."""
        if term != self.term:
            return term > self.term
        return self.leader in ("", coordinator)

    def follow(self, term: int, coordinator: str) -> Voter:
        """The stream of ``term`` from ``coordinator`` was taken."""
        if term < self.term:
            return self
        return Voter(term, coordinator, self.voted)

    def candidacy(self, above: int = 0) -> tuple[Voter, int]:
        """Vote for oneself: the new state and the term to ask for. A candidacy that failed
        asks for its term again (its own vote there stands) unless a voter answered with a
        term at or past it (``above``: the highest term refusals carried). The followed term
        does not move until the election is won (``follow``), so a candidate that loses, or
        hears from its coordinator meanwhile, deposes no one."""
        again = self.voted if self.voted > self.term else 0
        term = max(again or max(self.term, self.voted) + 1, above + 1)
        return Voter(self.term, self.leader, term), term

    def latest(self) -> int:
        """The highest term this voter follows or voted in (told with a refusal)."""
        return max(self.term, self.voted)

    def vote(
        self,
        *,
        term: int,
        candidate: str,
        theirs: Position,
        mine: Position,
        silent_for: float,
        suspect_after: float,
        campaigning: bool = False,
    ) -> tuple[Voter, str]:
        """Answer a vote request: the new state and "" if granted, else the reason.

        ``campaigning``: this voter is asking for votes itself right now. Its own vote in a
        candidacy that is over may go to a better candidate of the same term (that candidacy
        can no longer win, and the next one asks a later term), so a replica whose journal
        is behind does not push the election one term further."""
        if term == self.term == self.voted and self.leader == candidate:
            return self, ""  # the same request again
        if term <= self.term or term < self.voted or (term == self.voted and campaigning):
            return self, f"already in term {max(self.term, self.voted)}"
        if tuple(theirs) < tuple(mine):
            return self, f"my journal {tuple(mine)} is ahead of {tuple(theirs)}"
        if silent_for < suspect_after:
            return self, f"the coordinator was heard {silent_for:.2f} s ago"
        return Voter(term, candidate, term), ""
