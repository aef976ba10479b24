"""A replica of one app on a simulated machine: standby, election, takeover.

The replica keeps the coordinator's journal by applying the streamed entries to its own
``TaskTable`` (``faulttolerance.entries.apply``) and follows the coordinator's term with the
product's ``CoordinatorRole`` (``STANDBY``). A stream from a new term starts over from entry
0 and replaces the journal (the new coordinator's journal is the truth).

Election: a replica that hears nothing from the coordinator for ``suspect_after`` plus
``rank * suspect_after`` (rank 0 is the best; lower ranks wait longer, so the best live one
claims first) claims ``term + 1`` (``CoordinatorLost``). Before it coordinates it asks its
peers for their journals (``SyncRequest``; a peer that hears the higher term follows it and
stops acknowledging the old coordinator) and adopts the most advanced one, by (term of the
stream, length): an entry that a peer acknowledged, and so a result the old coordinator may
have acknowledged to its worker, is not lost. Then a ``CoordinatorSide`` takes its place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bonjourgrid.faulttolerance.entries import BadEntry, Entry, apply
from bonjourgrid.sim.clock import Timer
from bonjourgrid.sim.messages import (
    AppEnded,
    AppEndedAck,
    JournalAck,
    JournalAppend,
    PreVote,
    PreVoteReply,
    ProbeRequest,
    Stale,
    SyncReply,
    SyncRequest,
)
from bonjourgrid.states.coordinator import AppEnded as RoleAppEnded
from bonjourgrid.states.coordinator import CoordinatorLost, CoordinatorRole, Role, TermSeen
from bonjourgrid.states.tasktable import TaskTable

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode

_BYSTANDERS = 3
"""Idle machines asked to probe the coordinator when no other machine holds the app."""


class ReplicaSide:
    def __init__(self, node: SimNode, first: JournalAppend) -> None:
        self.node = node
        self.app = first.app
        self.spec = first.spec
        self.role = CoordinatorRole(first.app, role=Role.STANDBY, term=first.term)
        self.journal: list[Entry] = []
        self.journal_term = 0
        self.table = TaskTable(self.spec.tasks)
        self.coordinator = first.coordinator
        self.replicas: tuple[str, ...] = first.replicas
        self.workers: tuple[str, ...] = first.workers
        self.last_heard = node.clock.now
        self.ended = False
        self.taking_over = False
        self._stopped = False
        self._replies: dict[str, SyncReply] = {}
        self._voters: set[str] | None = None
        self._grants: set[str] = set()
        self._timer: Timer | None = node.later(node.world.config.heartbeat_interval, self._watch)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()

    def heard(self, src: str, term: int) -> None:
        """The coordinator (a heartbeat to this machine's volunteer) is alive."""
        if term >= self.role.term and not self.taking_over:
            self.last_heard = self.node.clock.now

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        if self._stopped:
            return
        if isinstance(msg, JournalAppend):
            self._append(src, msg)
        elif isinstance(msg, AppEnded):
            self._ended(src, msg)
        elif isinstance(msg, SyncRequest):
            self._sync_request(src, msg)
        elif isinstance(msg, PreVoteReply):
            if self._voters is not None and msg.term == self.role.term + 1:
                if msg.granted and src in self._voters:
                    self._grants.add(src)
                self._count_votes(final=False)
        elif isinstance(msg, SyncReply) and self.taking_over and msg.term == self.role.term:
            self._replies[src] = msg
            if set(self._replies) >= set(self._peers()):
                self._adopt()

    def _append(self, src: str, m: JournalAppend) -> None:
        if m.term < self.role.term or self.ended:
            self.node.send(src, Stale(self.app, self.role.term, not self.ended))
            return
        if self.taking_over:
            # Someone else won the election: follow it as a fresh standby.
            self.role.handle(TermSeen(m.term))
            self.stop()
            fresh = ReplicaSide(self.node, m)
            self.node.replicas[self.app] = fresh
            fresh.on_message(src, m)
            return
        if m.term > self.role.term:
            self.role.handle(TermSeen(m.term))
        self.last_heard = self.node.clock.now
        self.coordinator, self.replicas, self.workers = m.coordinator, m.replicas, m.workers
        if m.term > self.journal_term:
            if m.start != 0:
                self.node.send(src, JournalAck(self.app, m.term, 0))
                return
            self.journal = []
            self.table = TaskTable(self.spec.tasks)
            self.journal_term = m.term
        if m.start <= len(self.journal):
            for e in m.entries[len(self.journal) - m.start :]:
                try:
                    apply(self.table, e)
                except BadEntry as err:
                    self.node.checks.violation(f"{self.app}: replica {self.node.id}: {err}")
                self.journal.append(e)
        self.node.send(src, JournalAck(self.app, m.term, len(self.journal)))

    def _ended(self, src: str, m: AppEnded) -> None:
        if m.term < self.role.term or m.journal_len > len(self.journal) or self.taking_over:
            return
        if not self.ended:
            self.role.handle(RoleAppEnded(Role(m.outcome)))
            self.ended = True
            self.stop()
            self.node.checks.replica_ended(
                self.app, self.node.id, self.table, self.journal, m.term, m.outcome
            )
        self.node.send(src, AppEndedAck(self.app, m.term))

    def _sync_request(self, src: str, m: SyncRequest) -> None:
        if m.term <= self.role.term or self.ended:
            self.node.send(src, Stale(self.app, self.role.term, not self.ended))
            return
        if self.taking_over:
            return  # a rival claimant; the workers' terms settle it
        self.role.handle(TermSeen(m.term))
        self.last_heard = self.node.clock.now
        reply = SyncReply(self.app, m.term, self.journal_term, tuple(self.journal), self.workers)
        self.node.send(src, reply)

    # --- election ------------------------------------------------------------------------------

    def _peers(self) -> list[str]:
        return [r for r in self.replicas if r != self.node.id]

    def _watch(self) -> None:
        self._timer = None
        if self._stopped or self.ended or self.taking_over:
            return
        cfg = self.node.world.config
        me = self.node.id
        rank = self.replicas.index(me) if me in self.replicas else len(self.replicas)
        if self._voters is None and self.node.clock.now - self.last_heard > cfg.suspect_after * (
            1 + rank
        ):
            if not self.node.world.prevote:
                self._claim()
                return
            self._pre_vote()
        self._timer = self.node.later(cfg.heartbeat_interval, self._watch)

    def _pre_vote(self) -> None:
        """Ask the peers and the workers whether they lost the coordinator too.

        A replica cut off on its own hears no grant and does not claim; without this, it
        would coordinate a second copy of the app that the first never hears of.
        """
        me = self.node.id
        self._voters = {*self.replicas, *self.workers} - {me, self.coordinator}
        self._grants = set()
        term = self.role.term + 1
        for n in sorted(self._voters):
            self.node.send(n, PreVote(self.app, term))
        if not self._voters:
            # Nobody else holds the app: bystanders probe the coordinator for us, so a
            # replica cut off on its own still cannot claim.
            idle = [o.node for o in self.node.world.directory.idle() if o.node != me]
            self._voters = set(self.node.world.rng.sample(idle, min(_BYSTANDERS, len(idle))))
            for n in sorted(self._voters):
                self.node.send(n, ProbeRequest(self.app, term, self.coordinator))
        self.node.later(self.node.world.config.connect_timeout, lambda: self._count_votes(True))
        self._count_votes(final=False)

    def _count_votes(self, final: bool) -> None:
        if self._voters is None or self.taking_over or self._stopped or self.ended:
            return
        if 2 * (len(self._grants) + 1) > len(self._voters) + 1:
            self._voters = None
            self._claim()
        elif final:
            self._voters = None  # no majority: keep watching, ask again later

    def _claim(self) -> None:
        self.role.handle(CoordinatorLost())
        self.taking_over = True
        self.node.checks.log(f"claim {self.app} term {self.role.term} by {self.node.id}")
        peers = self._peers()
        for p in peers:
            self.node.send(p, SyncRequest(self.app, self.role.term))
        if peers:
            self.node.later(self.node.world.config.connect_timeout, self._adopt)
        else:
            self._adopt()

    def _adopt(self) -> None:
        from bonjourgrid.sim.coordinator_node import CoordinatorSide

        if self._stopped or not self.taking_over or self.node.replicas.get(self.app) is not self:
            return
        best = (self.journal_term, len(self.journal), self.journal)
        workers = set(self.workers)
        for r in self._replies.values():
            workers |= set(r.workers)
            if (r.journal_term, len(r.entries)) > best[:2]:
                best = (r.journal_term, len(r.entries), list(r.entries))
        journal = best[2]
        self.stop()
        del self.node.replicas[self.app]
        coord = CoordinatorSide(
            self.node,
            self.app,
            self.spec,
            self.role,
            journal=journal,
            known_workers=tuple(sorted(workers)),
            replicas=tuple(self._peers()),
        )
        self.node.coords[self.app] = coord
