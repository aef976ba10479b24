"""A replica of one app on a simulated machine: standby, election, takeover.

The replica keeps the coordinator's journal by applying the streamed entries to its own
``TaskTable`` (``faulttolerance.entries.apply``), follows the coordinator's term with the
product's ``CoordinatorRole`` (``STANDBY``) and holds the replica set (``quorum.Members``) the
coordinator streams with the entries. A stream from a new term starts over from entry 0 and
replaces the journal (the new coordinator's journal is the truth).

Election (``faulttolerance/quorum.py``, the product's rules): a member that hears nothing from
the coordinator for ``suspect_after`` plus ``rank * suspect_after`` (rank 0 is the best, so
the best live one asks first) votes for itself in the next term and asks the other members
(``VoteRequest`` with its journal's ``Position``). Each grants at most one vote per term, only
to a journal at least as advanced as its own and only if it, too, has not heard from the
coordinator for ``suspect_after``; once it granted, it refuses the old term's stream. With
``E`` votes of every set in force the replica claims the term and a ``CoordinatorSide`` takes
its place, with its own journal: the votes guarantee it holds every committed entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bonjourgrid.faulttolerance.entries import BadEntry, Entry, apply
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter
from bonjourgrid.sim.clock import Timer
from bonjourgrid.sim.messages import (
    AppEnded,
    AppEndedAck,
    JournalAck,
    JournalAppend,
    Stale,
    Vote,
    VoteRequest,
)
from bonjourgrid.states.coordinator import AppEnded as RoleAppEnded
from bonjourgrid.states.coordinator import CoordinatorLost, CoordinatorRole, Role, TermSeen
from bonjourgrid.states.tasktable import TaskTable

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode


class ReplicaSide:
    def __init__(self, node: SimNode, first: JournalAppend, voter: Voter | None = None) -> None:
        self.node = node
        self.app = first.app
        self.spec = first.spec
        self.role = CoordinatorRole(first.app, role=Role.STANDBY, term=first.term)
        self.voter = voter or Voter()
        self.journal: list[Entry] = []
        self.journal_term = 0
        self.table = TaskTable(self.spec.tasks)
        self.coordinator = first.coordinator
        self.members = Members()
        self.workers: tuple[str, ...] = first.workers
        self.last_heard = node.clock.now
        self.ended = False
        self._stopped = False
        self._ballot: int | None = None
        """The term this replica is a candidate in, while it asks for votes."""
        self._grants: set[str] = set()
        self._above = 0
        """The highest term a voter refused us with: the next candidacy goes past it."""
        self._timer: Timer | None = node.later(node.world.config.heartbeat_interval, self._watch)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()

    def position(self) -> Position:
        return Position(self.journal_term, len(self.journal), self.members.version)

    def heard(self, src: str, term: int) -> None:
        """The coordinator (a heartbeat to this machine's volunteer) is alive."""
        if src == self.coordinator and term >= self.voter.term:
            self.last_heard = self.node.clock.now
            self._ballot = None  # a candidate that hears its coordinator gives up

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        if self._stopped:
            return
        if isinstance(msg, JournalAppend):
            self._append(src, msg)
        elif isinstance(msg, AppEnded):
            self._ended(src, msg)
        elif isinstance(msg, VoteRequest):
            self._vote_request(src, msg)
        elif isinstance(msg, Vote) and msg.granted and msg.term == self._ballot:
            self._grants.add(src)
            self._count()
        elif isinstance(msg, Vote) and not msg.granted:
            self._above = max(self._above, msg.term)

    def _append(self, src: str, m: JournalAppend) -> None:
        if self.ended or not self.voter.accepts(m.term, m.coordinator):
            self.node.send(src, Stale(self.app, max(self.voter.term, self.role.term), True))
            return
        self.voter = self.voter.follow(m.term, m.coordinator)
        if m.term > self.role.term:
            self.role.handle(TermSeen(m.term))
        self.last_heard = self.node.clock.now
        self._ballot = None
        self.coordinator, self.workers = m.coordinator, m.workers
        if m.term > self.journal_term:
            if m.start != 0:
                self.node.send(src, JournalAck(self.app, m.term, 0, -1))
                return
            self.journal = []
            self.table = TaskTable(self.spec.tasks)
            self.journal_term = m.term
            self.members = m.members
        if m.start <= len(self.journal):
            for e in m.entries[len(self.journal) - m.start :]:
                try:
                    apply(self.table, e)
                except BadEntry as err:
                    self.node.checks.violation(f"{self.app}: replica {self.node.id}: {err}")
                self.journal.append(e)
            if m.members.version > self.members.version:
                self.members = m.members
        ack = JournalAck(self.app, m.term, len(self.journal), self.members.version)
        self.node.send(src, ack)

    def _ended(self, src: str, m: AppEnded) -> None:
        if m.term < self.role.term or m.journal_len > len(self.journal):
            return
        if not self.ended:
            self.role.handle(RoleAppEnded(Role(m.outcome)))
            self.ended = True
            self.stop()
            self.node.checks.replica_ended(
                self.app, self.node.id, self.table, self.journal, m.term, m.outcome
            )
        self.node.send(src, AppEndedAck(self.app, m.term))

    def _vote_request(self, src: str, m: VoteRequest) -> None:
        if self.ended:
            self.node.send(src, Vote(self.app, self.voter.latest(), False))
            return
        voter, why = self.voter.vote(
            term=m.term,
            candidate=src,
            theirs=m.position,
            mine=self.position(),
            silent_for=self.node.clock.now - self.last_heard,
            suspect_after=self.node.world.config.suspect_after,
            campaigning=self._ballot is not None,
        )
        if not why:
            self.voter = voter
            self.role.handle(TermSeen(m.term))
            if self._ballot is not None and self._ballot <= m.term:
                self._ballot = None
        self.node.send(src, Vote(self.app, m.term if not why else self.voter.latest(), not why))

    # --- election ------------------------------------------------------------------------------

    def _watch(self) -> None:
        self._timer = None
        if self._stopped or self.ended:
            return
        cfg = self.node.world.config
        me = self.node.id
        ranked = self.members.everyone()
        if me in ranked and self._ballot is None:
            rank = ranked.index(me)
            if self.node.clock.now - self.last_heard > cfg.suspect_after * (1 + rank):
                if not self.node.world.elections:
                    self.voter, term = self.voter.candidacy()
                    self._claim(term)  # the naive rule: no votes asked
                    return
                self._ask_votes()
                if self._stopped:
                    return
        self._timer = self.node.later(cfg.heartbeat_interval, self._watch)

    def _ask_votes(self) -> None:
        self.voter, term = self.voter.candidacy(self._above)
        self._ballot, self._grants = term, {self.node.id}
        self.node.checks.log(f"{self.app} {self.node.id} asks votes for term {term}")
        ask = VoteRequest(self.app, term, self.position())
        for n in self.members.everyone():
            if n != self.node.id:
                self.node.send(n, ask)

        def give_up() -> None:
            if self._ballot == term:
                self._ballot = None  # no quorum in time: keep watching, ask again later

        self.node.later(self.node.world.config.connect_timeout, give_up)
        self._count()

    def _count(self) -> None:
        if self._ballot is not None and self.members.won(self._grants):
            term, self._ballot = self._ballot, None
            self._claim(term)

    def _claim(self, term: int) -> None:
        from bonjourgrid.sim.coordinator_node import CoordinatorSide

        me = self.node.id
        self.voter = Voter(term, me, max(term, self.voter.voted))
        self.role.handle(TermSeen(term - 1))
        self.role.handle(CoordinatorLost())
        self.node.checks.log(f"claim {self.app} term {self.role.term} by {me}")
        self.stop()
        del self.node.replicas[self.app]
        self.node.coords[self.app] = CoordinatorSide(
            self.node,
            self.app,
            self.spec,
            self.role,
            journal=self.journal,
            known_workers=self.workers,
            members=self.members,
        )
