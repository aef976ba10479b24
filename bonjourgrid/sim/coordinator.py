"""The coordinator of one app on a simulated machine: a thin shell around the product's
``AppEngine`` (bonjourgrid/engine/app.py), the very engine the daemon runs.

The engine decides (placement, recruiting, releasing, the replica set, commit on ``W``
copies, acknowledgements, step-down, takeover reconciliation, the end); this shell only
feeds it what happened — the real ``control.messages`` objects as they arrive
(``TaskResult``, ``HeartbeatAck``, ``JournalAck``, ``Fenced``) — and carries out its actions
with the same messages on the seeded router and the virtual clock: ``Reserve``,
``StageApp``, ``RunTask``, ``ResultAck``, ``AppEnded``, ``Release``, and the journal stream
(``ReplicaOpen`` snapshot, ``JournalAppend`` per entry, ``Replicas``), as the daemon's
``coordinator/replication.py`` sends it. A member it ``Probe``s, and a rival whose
``_bjg-coord`` record shows a higher term, get an ``AppQuery``; the ``AppState`` answer is
fed as ``MemberState`` / ``TermSeen``.

What the shell adds is what TCP gives the real code: heartbeats and loss detection
(``LinkLost`` after ``suspect_after`` of silence, or when a machine answers that it serves
nothing of the app: the product sees its link close), resends over a lossy network
(``RunTask`` not listed in a heartbeat ack, ``StageApp`` until acknowledged, the snapshot
until acknowledged, entries from the last acknowledged one, ``Replicas`` until its version
is acknowledged), and a ``Reserve`` that nobody answers counting as refused after
``connect_timeout``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import (
    AppEnded,
    AppQuery,
    AppState,
    Fenced,
    Heartbeat,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Release,
    ReplicaOpen,
    Replicas,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
)
from bonjourgrid.engine import app_events as ev
from bonjourgrid.engine.app import AppEngine, AppTiming
from bonjourgrid.engine.placement import CorePlacement
from bonjourgrid.faulttolerance.entries import Entry, encode
from bonjourgrid.faulttolerance.quorum import Members, Voter
from bonjourgrid.sim.clock import Timer
from bonjourgrid.states.coordinator import CoordinatorRole, Role
from bonjourgrid.states.taskstate import TaskState
from bonjourgrid.states.tasktable import TaskTable

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode

BACKEND = "embedded"
_NO_BUNDLE = hashlib.sha256(b"").hexdigest()
"""A simulated app has no files: its bundle is empty."""


@dataclass
class WorkerView:
    """What the shell keeps of one linked worker (``WorkerLink`` in the product)."""

    node: str
    last_heard: float
    stage_sent: float
    staged: bool = False


class CoordinatorSide:
    def __init__(
        self,
        node: SimNode,
        app: str,
        spec: AppSpec,
        role: CoordinatorRole,
        journal: list[Entry] | None = None,
        members: Members | None = None,
    ) -> None:
        self.node = node
        self.app = app
        self.spec = spec
        self.cfg = cfg = node.world.config
        self.journal: list[Entry] = list(journal or [])
        now = node.clock.now
        self.engine = AppEngine(
            app=app,
            spec=spec,
            me=node.id,
            now=now,
            timing=AppTiming(
                recruit_retry=cfg.recruit_retry,
                heartbeat_interval=cfg.heartbeat_interval,
                rehome_grace=cfg.rehome_grace,
                connect_timeout=cfg.connect_timeout,
                recruit_timeout=cfg.recruit_timeout,
            ),
            placement=CorePlacement(BACKEND),
            quorum=node.world.quorum,
            role=role,
            entries=self.journal,
            members=members,
        )
        self.links: dict[str, WorkerView] = {}
        self.recruiting: dict[str, float] = {}
        self.acked: dict[str, int] = {}
        """Entries each fed replica acknowledged (the stream resends from there)."""
        self.versions: dict[str, int] = {}
        """The replica-set version each fed replica acknowledged."""
        self.opened: set[str] = set()
        """Fed replicas that acknowledged the snapshot (until then it is sent again)."""
        self._encoded: list[str] = [encode(e) for e in self.journal]
        self.closed = False
        self._tick_timer: Timer | None = None
        self._wake_timer: Timer | None = None
        node.checks.term_claimed(app, role.term, node.id, now)
        node.world.directory.publish_coordinator(app, node.id, role.term)
        node.later(0.0, self._tick)

    @property
    def role(self) -> CoordinatorRole:
        return self.engine.role

    @property
    def term(self) -> int:
        return self.engine.term

    @property
    def table(self) -> TaskTable:
        return self.engine.table

    @property
    def pending(self) -> tuple[tuple[str, int], ...]:
        """Results this coordinator is committing, not yet acknowledged."""
        return self.engine.committing

    @property
    def members(self) -> Members:
        return self.engine.members

    # --- feeding the engine ------------------------------------------------------------------

    def _feed(self, event: ev.Event) -> None:
        todo = list(self.engine.handle(event))
        while todo and not self.closed:
            todo += self._do(todo.pop(0))

    def _seen(self) -> ev.Seen:
        d = self.node.world.directory
        return ev.Seen((*d.idle(), *d.serving(self.app)))

    def _tick(self) -> None:
        """Every heartbeat interval: heartbeats, loss detection, resends, the stream, then
        the engine's ``Tick``."""
        if self.closed:
            return
        now = self.node.clock.now
        cfg = self.cfg
        for w in list(self.links.values()):
            if now - w.last_heard > cfg.suspect_after:
                self.links.pop(w.node, None)
                self._feed(ev.LinkLost(now, w.node, "silent"))
                continue
            self.node.send(w.node, Heartbeat(self.app, self.term, cfg.reserve_lease))
            if not w.staged and now - w.stage_sent > 2 * cfg.heartbeat_interval:
                w.stage_sent = now
                self.node.send(w.node, StageApp(self.app, self.term, _NO_BUNDLE, b""))
        for n, asked in list(self.recruiting.items()):
            if now - asked > cfg.connect_timeout:
                del self.recruiting[n]
                self._feed(ev.ReserveFailed(now, n, "no answer"))
        for n, t in self.node.world.directory.coordinators(self.app).items():
            if t > self.term and n != self.node.id:
                self.node.send(n, AppQuery(self.app))
        self._resend()
        self._feed(self._seen())
        self._feed(ev.Tick(now))
        if not self.closed:
            self._tick_timer = self.node.later(cfg.heartbeat_interval, self._tick)

    def wake(self) -> None:
        """Something changed: let the engine place/recruit/release now (the product's wake)."""
        if self._wake_timer is None and not self.closed:
            self._wake_timer = self.node.later(0.0, self._woken)

    def _woken(self) -> None:
        self._wake_timer = None
        if not self.closed:
            self._feed(ev.Tick(self.node.clock.now))

    # --- carrying out the engine's actions ----------------------------------------------------

    def _do(self, a: ev.Action) -> list[ev.Action]:
        now = self.node.clock.now
        send = self.node.send
        if isinstance(a, ev.Recruit):
            self.recruiting[a.offer.node] = now
            me = self.node.id
            send(a.offer.node, Reserve(self.app, me, me, a.term, self.cfg.reserve_lease, BACKEND))
        elif isinstance(a, ev.Prepare):
            self.links[a.worker] = WorkerView(a.worker, now, now)
            send(a.worker, StageApp(self.app, self.term, _NO_BUNDLE, b""))
        elif isinstance(a, ev.Launch):
            self._run(a.task, a.attempt, a.worker)
        elif isinstance(a, ev.StageOutputs):
            return self.engine.handle(ev.OutputsStaged(now, a.result.task, a.result.attempt))
        elif isinstance(a, ev.Append):
            assert a.seq == len(self.journal) + 1, (a.seq, len(self.journal))
            self.journal.append(a.entry)
            self._encoded.append(encode(a.entry))
            for r in sorted(self.opened):
                send(r, self._append_msg(a.seq))
            self.wake()
        elif isinstance(a, ev.Ack):
            rec = self.table.record(a.task)
            if rec.state is TaskState.DONE and rec.attempts == a.attempt:
                key = (a.task, a.attempt)
                self.node.checks.committed(self.app, key, a.term, self.node.id, a.worker)
            send(a.worker, ResultAck(self.app, a.task, a.attempt, a.term))
            self.wake()
        elif isinstance(a, ev.Release):
            self.links.pop(a.worker, None)
            if a.outcome and a.worker in self.acked:
                send(a.worker, AppEnded(self.app, self.term, a.outcome))
            send(a.worker, Release(self.app, self.term, a.reason))
        elif isinstance(a, ev.CloseLink):
            if self.links.pop(a.worker, None) is not None and self.role.coordinating:
                # the product's link closes: its loss is what the shell reports next
                return self.engine.handle(ev.LinkLost(now, a.worker, a.reason))
        elif isinstance(a, (ev.Feed, ev.Resync)):
            self.acked[a.node] = 0
            self.versions.pop(a.node, None)
            self.opened.discard(a.node)
            if isinstance(a, ev.Feed):
                self._open(a.node)  # a resync waits for the next heartbeat (no ack storm)
        elif isinstance(a, ev.Unfeed):
            self.acked.pop(a.node, None)
            self.versions.pop(a.node, None)
            self.opened.discard(a.node)
        elif isinstance(a, ev.MembersChanged):
            m = a.members
            joint = " joint" if m.joint else ""
            self.node.checks.log(f"{self.app} members v{m.version} {m.nodes}{joint}")
            for r in sorted(self.opened):
                send(r, self._members_msg())
        elif isinstance(a, ev.Probe):
            send(a.node, AppQuery(self.app))
        elif isinstance(a, ev.SaveRole):
            if a.role == Role.STEPPED_DOWN.value:
                self.node.checks.stepped_down(self.app, self.node.id, a.term)
        elif isinstance(a, ev.Ended):
            ended = a.outcome in ("finished", "cancelled", "failed")
            if ended:
                me, table = self.node.id, self.table
                self.node.checks.app_ended(self.app, self.term, me, a.outcome, table, self.journal)
            self._close(complete=ended)
        return []

    def _run(self, task: str, attempt: int, worker: str) -> None:
        """``RunTask``: what the task runs is the workload table's (the volunteer looks it up)."""
        cpus = self.spec.task(task).requirements.cpus
        msg = RunTask(self.app, self.term, task, attempt, ("sim",), {}, None, cpus, (), b"", "")
        self.node.send(worker, msg)

    # --- the journal stream (coordinator/replication.py's messages) ---------------------------

    def _open(self, r: str) -> None:
        """The snapshot: every entry so far, then the replica set."""
        me = self.node.id
        snapshot = ReplicaOpen(
            app=self.app,
            term=self.term,
            coordinator=me,
            coordinator_host=me,
            spec=self.spec.to_json(),
            bundle=b"",
            digest=_NO_BUNDLE,
            user="",
            replicas=self.members.nodes,
            hosts={},
            seq=len(self.journal),
            entries="\n".join(self._encoded),
            outputs=b"",
        )
        self.node.send(r, snapshot)
        self.node.send(r, self._members_msg())

    def _append_msg(self, seq: int) -> JournalAppend:
        return JournalAppend(self.app, self.term, seq, self._encoded[seq - 1], self.node.id, b"")

    def _members_msg(self) -> Replicas:
        m = self.members
        return Replicas(self.app, self.term, m.nodes, m.version, m.old or (), m.joint)

    def _resend(self) -> None:
        """Every heartbeat: what a fed replica has not acknowledged (TCP's retransmission)."""
        for r, acked in list(self.acked.items()):
            if r not in self.opened:
                self._open(r)
                continue
            for seq in range(acked + 1, len(self.journal) + 1):
                self.node.send(r, self._append_msg(seq))
            if self.versions.get(r, -1) < self.members.version:
                self.node.send(r, self._members_msg())

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        if self.closed:
            return
        now = self.node.clock.now
        if src in self.links and not isinstance(msg, (ReserveReply, AppState)):
            self.links[src].last_heard = now
        if isinstance(msg, TaskResult):
            self._feed(ev.FromWorker(now, src, msg))
        elif isinstance(msg, HeartbeatAck):
            self._heartbeat_ack(src, msg)
        elif isinstance(msg, ReserveReply):
            self._reserve_reply(src, msg)
        elif isinstance(msg, Fenced):
            if self.recruiting.pop(src, None) is not None:
                self._feed(ev.ReserveFailed(now, src, "fenced", msg.term))
            else:
                self._feed(ev.FromWorker(now, src, msg))
        elif isinstance(msg, StageAck):
            w = self.links.get(src)
            if w is not None and not w.staged and msg.ok:
                w.staged = True
                self._feed(ev.Prepared(now, src))
                self.wake()
        elif isinstance(msg, JournalAck):
            if src in self.acked and msg.term == self.term and msg.ok:
                self.opened.add(src)
                self.acked[src] = max(self.acked[src], msg.seq)
                self.versions[src] = max(self.versions.get(src, -1), msg.members)
            if src in self.acked or msg.term > self.term:
                self._feed(ev.FromWorker(now, src, msg))
        elif isinstance(msg, AppState):
            self._feed(ev.MemberState(now, src, msg.term, msg.role))
            if not msg.role and src in self.links:
                self.links.pop(src, None)
                self._feed(ev.LinkLost(now, src, "serves nothing of the app"))

    def _heartbeat_ack(self, src: str, m: HeartbeatAck) -> None:
        if src not in self.links:
            return
        self._feed(ev.FromWorker(self.node.clock.now, src, m))
        if self.closed or m.term != self.term:
            return
        reported = set(m.running)
        ledger = self.engine.ledger
        for key, (n, _) in list(ledger.running.items()):
            if n == src and f"{key[0]}#{key[1]}" not in reported and key not in ledger.in_flight:
                self._run(key[0], key[1], src)  # lost on the way? the worker ignores repeats

    def _reserve_reply(self, src: str, m: ReserveReply) -> None:
        now = self.node.clock.now
        if src not in self.recruiting:
            if m.accepted and src not in self.links:
                self.node.send(src, Release(self.app, self.term, "too late"))  # let it go
            return
        del self.recruiting[src]
        if not m.accepted:
            self._feed(ev.ReserveFailed(now, src, m.reason))
            return
        offer = self.node.world.directory.offer(src)
        self._feed(ev.Reserved(now, src, src, m.slots, offer))

    # --- the end -------------------------------------------------------------------------------

    def _close(self, complete: bool = False) -> None:
        self.closed = True
        voter = Voter(self.term, self.node.id, self.term)
        self.node.remember(self.app, voter, durable=True, complete=complete)
        self.node.world.directory.withdraw_coordinator(self.app, self.node.id)
        if self.node.coords.get(self.app) is self:
            del self.node.coords[self.app]
