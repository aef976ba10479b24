"""A replica of one app on a simulated machine: a thin shell around the product's
``ReplicaEngine`` (bonjourgrid/engine/replica.py), the same engine the daemon runs.

What the engine decides (the product's code, unchanged): suspicion (silence, a goodbye of
the coordinator's record in the simulated mDNS directory), the ask-first step (``AppQuery``
to the coordinator, other records and better-ranked replicas, answered by sim/node.py with
``AppState``), the one waiting rule (``suspect_after + rank * takeover_stagger``, no
``suspect_after`` after a goodbye), the ballot (``VoteRequest``/``Vote``, the real
``control.messages`` classes) and every vote.

Following the coordinator's stream is this shell's, with the product's messages and the
rules of the daemon's ``coordinator/replica_side.py``: a ``ReplicaOpen`` snapshot opens
the copy (a new term's stream starts with one and replaces the journal: the new
coordinator's journal is the truth), each ``JournalAppend`` adds entry ``seq`` (a duplicate
is acknowledged, a gap or a new term without a snapshot answered ``JournalAck(ok=False)``:
send a snapshot), ``Replicas`` carries the replica set; a lower term, or the same term from
another node, is refused with the higher term (which fences the sender). Entries are applied
to the replica's own ``TaskTable`` (``faulttolerance.entries``); the term is followed with
the product's ``CoordinatorRole`` (``STANDBY``). When the engine says ``Claim``, a
``CoordinatorSide`` takes this replica's place with its journal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import (
    AppEnded,
    AppState,
    JournalAck,
    JournalAppend,
    ReplicaOpen,
    Replicas,
    Vote,
    VoteRequest,
)
from bonjourgrid.engine import (
    Action,
    AppStateAnswer,
    AskCoordinates,
    Claim,
    CoordinatorHeard,
    CoordinatorRecordGone,
    CoordinatorRecordSeen,
    Event,
    Followed,
    Forget,
    Note,
    PersistVote,
    ReplicaEngine,
    RequestVotes,
    SendVote,
    Tick,
    Timing,
    VoteAnswer,
    VoteRequested,
)
from bonjourgrid.faulttolerance.entries import BadEntry, Entry, apply, decode
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter
from bonjourgrid.sim.clock import Timer
from bonjourgrid.states.coordinator import AppEnded as RoleAppEnded
from bonjourgrid.states.coordinator import CoordinatorLost, CoordinatorRole, Role, TermSeen
from bonjourgrid.states.taskstate import TERMINAL_STATES
from bonjourgrid.states.tasktable import TaskTable

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode


class ReplicaSide:
    def __init__(self, node: SimNode, first: ReplicaOpen, voter: Voter | None = None) -> None:
        self.node = node
        self.app = first.app
        self.spec = AppSpec.from_json(first.spec)
        self.role = CoordinatorRole(first.app, role=Role.STANDBY, term=first.term)
        self.journal: list[Entry] = []
        self.journal_term = 0
        self.table = TaskTable(self.spec.tasks)
        self.members = Members()
        self.ended = False
        self._stopped = False
        self._records: set[str] = set()
        """The directory's coordinator records of the app at the last look."""
        self.engine = ReplicaEngine(
            app=first.app,
            me=node.id,
            timing=Timing.of(node.world.config),
            now=node.clock.now,
            coordinator=first.coordinator,
            voter=voter,
            term=first.term,
        )
        self._timer: Timer | None = node.later(node.world.config.heartbeat_interval, self._watch)

    @property
    def voter(self) -> Voter:
        return self.engine.voter

    @property
    def coordinator(self) -> str:
        return self.engine.coordinator

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()

    def position(self) -> Position:
        return Position(self.journal_term, len(self.journal), self.members.version)

    def heard(self, src: str, term: int) -> None:
        """The coordinator (a heartbeat to this machine's volunteer) is alive."""
        if src == self.coordinator and term >= self.voter.term and not self._stopped:
            self._feed(CoordinatorHeard(self.node.clock.now))

    def state(self) -> AppState:
        """This replica's answer to an ``AppQuery``."""
        return AppState(self.app, self.role.term, self.role.role.value, False, self.ended)

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        if self._stopped:
            if isinstance(msg, VoteRequest):
                why = "the app ended here" if self.ended else "this copy is dropped"
                self.node.send(src, Vote(self.app, self.voter.latest(), False, why))
            return
        if isinstance(msg, (ReplicaOpen, JournalAppend, Replicas)):
            self.node.send(src, self._stream(src, msg))
        elif isinstance(msg, AppEnded):
            self._ended(msg)
        elif isinstance(msg, VoteRequest):
            if msg.candidate == src:
                self._feed(VoteRequested(self.node.clock.now, msg), src)
        elif isinstance(msg, Vote):
            self._feed(VoteAnswer(src, msg.term, msg.granted, msg.reason))
        elif isinstance(msg, AppState):
            self._feed(AppStateAnswer(src, msg.term, msg.coordinating, msg.complete))

    def _ack(self, term: int, ok: bool = True) -> JournalAck:
        return JournalAck(self.app, term, len(self.journal), ok, self.members.version)

    def _stream(self, src: str, m: ReplicaOpen | JournalAppend | Replicas) -> JournalAck:
        """One message of the coordinator's stream; the answer (replica_side.py's rules)."""
        coordinator = m.coordinator if isinstance(m, ReplicaOpen) else src
        if self.ended or not self.engine.accepts(m.term, coordinator):
            return JournalAck(self.app, max(self.voter.latest(), self.role.term), 0, False)
        if m.term > self.role.term:
            self.role.handle(TermSeen(m.term))
        if isinstance(m, ReplicaOpen):
            self._open(m)
        elif m.term != self.journal_term:
            return self._ack(m.term, False)  # a new term's stream opens with a snapshot
        elif isinstance(m, Replicas):
            if m.version >= self.members.version:
                self.members = Members(m.version, m.replicas, m.old if m.joint else None)
        elif m.seq == len(self.journal) + 1:
            self._take(decode(m.entry))
        elif m.seq > len(self.journal):
            self._follow(m.term, src)
            return self._ack(m.term, False)  # a gap: send a snapshot
        self._follow(m.term, coordinator)
        return self._ack(m.term)

    def _open(self, m: ReplicaOpen) -> None:
        """A snapshot: the coordinator's journal up to ``seq`` replaces this copy's."""
        if m.term > self.journal_term:
            self.members = Members(0, m.replicas)
        self.journal_term = m.term
        self.journal = []
        self.table = TaskTable(self.spec.tasks)
        for line in m.entries.split("\n"):
            if line:
                self._take(decode(line))

    def _take(self, e: Entry) -> None:
        try:
            apply(self.table, e)
        except BadEntry as err:
            self.node.checks.violation(f"{self.app}: replica {self.node.id}: {err}")
        self.journal.append(e)

    def _follow(self, term: int, coordinator: str) -> None:
        """Tell the engine what this copy now holds, and that the coordinator spoke."""
        self._feed(Followed(term, coordinator, self.position(), self.members))
        self._feed(CoordinatorHeard(self.node.clock.now))

    def _ended(self, m: AppEnded) -> None:
        """The end, said after the whole journal (on the product's one TCP link it cannot
        overtake the stream; here it may, so a copy still missing entries waits for them:
        an app that finished has every task terminal)."""
        if m.term < self.role.term or self.ended:
            return
        complete = all(r.state in TERMINAL_STATES for r in self.table.records())
        if m.outcome == Role.FINISHED.value and not complete:
            return
        self.role.handle(RoleAppEnded(Role(m.outcome)))
        self.ended = True
        self.stop()
        self.node.checks.replica_ended(
            self.app, self.node.id, self.table, self.journal, m.term, m.outcome
        )

    # --- the engine ----------------------------------------------------------------------------

    def _watch(self) -> None:
        """Every heartbeat interval: the directory's records of the app, then the clock."""
        self._timer = None
        if self._stopped or self.ended:
            return
        records = set(self.node.world.directory.coordinators(self.app))
        for n in records - self._records:
            self._feed(CoordinatorRecordSeen(n))
        for n in self._records - records:
            self._feed(CoordinatorRecordGone(n))
        self._records = records
        if not self.node.world.elections:
            self._naive()
        else:
            self._feed(Tick(self.node.clock.now))
        if not self._stopped:
            self._timer = self.node.later(self.node.world.config.heartbeat_interval, self._watch)

    def _naive(self) -> None:
        """``--naive`` (the simulation proving its checks can fail): claim after the waiting
        rule's silence with no question asked and no votes (never the product's rule)."""
        e = self.engine
        silent = e.silent_for(self.node.clock.now)
        if self.node.id in self.members.everyone() and silent > e.due_after():
            self._claim(self.voter.candidacy()[1])

    def _feed(self, event: Event, src: str = "") -> None:
        """One event into the engine; its actions carried out on the simulated network."""
        for action in self.engine.handle(event):
            self._do(action, src)
            if self._stopped:
                return

    def _do(self, action: Action, src: str) -> None:
        if isinstance(action, SendVote):
            self.node.send(src, action.vote)
        elif isinstance(action, PersistVote):
            if action.term > self.role.term:
                self.role.handle(TermSeen(action.term))
        elif isinstance(action, AskCoordinates):
            for n in action.peers:
                self.node.send(n, action.query)
        elif isinstance(action, RequestVotes):
            self.node.checks.log(f"{self.app} {self.node.id} asks votes for term {action.term}")
            for n in action.peers:
                self.node.send(n, action.request)
        elif isinstance(action, Claim):
            self._claim(action.term)
        elif isinstance(action, Forget):
            self.node.checks.log(f"{self.app} {self.node.id} forgets: {action.reason}")
            self.node.left_app(self.app)
        elif isinstance(action, Note):
            pass

    def _claim(self, term: int) -> None:
        me = self.node.id
        self.role.handle(TermSeen(term - 1))
        self.role.handle(CoordinatorLost())
        self.node.checks.log(f"claim {self.app} term {self.role.term} by {me}")
        self.stop()
        del self.node.replicas[self.app]
        self.node.coords[self.app] = self.node.world.coordinator(
            self.node,
            self.app,
            self.spec,
            self.role,
            journal=self.journal,
            members=self.members,
        )
