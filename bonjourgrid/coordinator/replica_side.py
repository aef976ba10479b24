"""The replica side of an app's journal: follow the coordinator's stream under the quorum
rules (faulttolerance/quorum.py), keep the election state, and the snapshot a coordinator
sends a new replica (with the app's CE key, so that an elected replica can prove to the
workers that it coordinates the app)."""

from __future__ import annotations

import logging

from bonjourgrid.control.messages import JournalAck, JournalAppend, ReplicaOpen, Replicas
from bonjourgrid.coordinator.app_coordinator_base import AppCoordinatorBase
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter
from bonjourgrid.states.coordinator import TermSeen

log = logging.getLogger(__name__)


class ReplicaSide(AppCoordinatorBase):
    """The replica part of ``AppCoordinator`` (a mixin): journal stream, members, snapshot."""

    def position(self) -> Position:
        """How far this copy of the journal goes (compared by votes)."""
        return Position(self.journal_term, self.seq, self.members.version)

    def save_election(self) -> None:
        """Persist this daemon's election state for the app (a vote must survive a crash)."""
        self.journal.update_app(
            self.app_id,
            term=self.term,
            voted=self.voter.voted,
            leader=self.voter.leader,
            journal_term=self.journal_term,
        )

    def persist_vote(self, voter: Voter, term: int = 0) -> None:
        """Take this daemon's election state for the app (the replica engine's PersistVote,
        or the voter that follows a new coordinator's snapshot) and save it before any answer
        leaves; a higher ``term`` seen in it moves the role's term up."""
        self.voter = voter
        if term > self.term:
            self.role.handle(TermSeen(term))
        self.save_election()

    def _save_members(self, members: Members) -> None:
        self.members = members
        self.replica_ranks = members.everyone()
        self.journal.update_app(
            self.app_id,
            replicas=members.nodes,
            members_version=members.version,
            members_old=members.old,
        )

    def _fence(self) -> int:
        return max(self.term, self.voter.term)

    def follow_append(self, msg: JournalAppend) -> JournalAck:
        """Replica side: take entry ``msg.seq`` unless the stream is refused — a lower term, or
        the same term from another node than the one followed (the refusal carries the
        higher term, which fences the sender), or a new term's stream that did not open
        with a snapshot (ok False: the coordinator sends one)."""
        if not self.voter.accepts(msg.term, self.coordinator[0]):
            return JournalAck(self.app_id, self._fence(), self.seq, False)
        if msg.term != self.journal_term:
            return JournalAck(self.app_id, msg.term, self.seq, False)
        ok = self.replicate(msg)
        return JournalAck(self.app_id, msg.term, self.seq, ok, self.members.version)

    def follow_members(self, msg: Replicas) -> JournalAck:
        """Replica side: the coordinator's replica set (journaled like an entry)."""
        if not self.voter.accepts(msg.term, self.coordinator[0]):
            return JournalAck(self.app_id, self._fence(), self.seq, False)
        if msg.term != self.journal_term:
            return JournalAck(self.app_id, msg.term, self.seq, False)
        if msg.version >= self.members.version:
            old = msg.old if msg.joint else None
            self._save_members(Members(msg.version, msg.replicas, old))
        return JournalAck(self.app_id, msg.term, self.seq, True, self.members.version)

    def replicate(self, msg: JournalAppend) -> bool:
        """A replica takes entry ``msg.seq`` from its coordinator: files first, then the
        journal, then the table. False on a gap (the coordinator then sends a snapshot)."""
        if msg.seq <= self.seq:
            return True  # a duplicate
        if msg.seq != self.seq + 1:
            log.warning("app %s: journal gap (have %d, got %d)", self.app_id, self.seq, msg.seq)
            return False
        entry = je.decode(msg.entry)
        if msg.outputs and isinstance(entry, (je.Finished, je.Abandoned)):
            self.store.stage(entry.task, entry.attempt, msg.outputs)
            self.store.promote(entry.task, entry.attempt)
        self.journal.append(self.app_id, msg.seq, msg.entry)
        self._replay(entry)
        self.seq = msg.seq
        return True

    def _snapshot(self, ranks: tuple[str, ...]) -> ReplicaOpen:
        return ReplicaOpen(
            app=self.app_id,
            term=self.term,
            coordinator=self.me.node,
            coordinator_host=self.me.host,
            spec=self.spec.to_json(),
            bundle=self.bundle,
            digest=self.digest,
            user=self.user,
            replicas=ranks,
            hosts=dict(self.worker_hosts),
            seq=self.seq,
            entries="\n".join(self.journal.entries(self.app_id)),
            outputs=self.store.export(),
            signature=self.signature,
            signer=self.signer,
            ce_secret=self.ce_key.hex(),
        )
