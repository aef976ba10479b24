"""The coordinator of one app on a simulated machine (``Scenario(engine=True)``, ``--engine``):
a thin shell around the product's
``AppEngine`` (bonjourgrid/engine/app.py), the very engine the daemon runs.

The engine decides (placement, recruiting, releasing, the replica set, commit on ``W``
copies, acknowledgements, step-down, takeover reconciliation, the end); this shell only
feeds it what happened — with the real ``control.messages`` objects it takes (``TaskResult``,
``HeartbeatAck``, ``JournalAck``) — and carries out its actions with the seeded router and
the virtual clock. What the shell adds is what TCP gives the real code: heartbeats and loss
detection, resends over a lossy network (``RunTask`` not listed in a heartbeat ack,
``StageApp`` until acknowledged, the journal from the last acknowledged entry), and a
``Reserve`` that nobody answers counting as refused after ``connect_timeout``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control import messages as cm
from bonjourgrid.engine import app_events as ev
from bonjourgrid.engine.app import AppEngine, AppTiming
from bonjourgrid.engine.placement import CorePlacement
from bonjourgrid.faulttolerance.entries import Entry
from bonjourgrid.faulttolerance.quorum import Members, Voter
from bonjourgrid.sim.clock import Timer
from bonjourgrid.sim.messages import (
    AppEnded,
    AppEndedAck,
    Heartbeat,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Release,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    Stale,
    TaskResult,
    TermQuery,
)
from bonjourgrid.states.coordinator import CoordinatorRole, Role
from bonjourgrid.states.taskstate import TaskState
from bonjourgrid.states.tasktable import TaskTable

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode

BACKEND = "embedded"
_NO_OUTPUTS = hashlib.sha256(b"").hexdigest()


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
        known_workers: tuple[str, ...] = (),
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
        self.known_workers = known_workers
        self.links: dict[str, WorkerView] = {}
        self.recruiting: dict[str, float] = {}
        self.acked: dict[str, int] = {}
        """Entries each fed replica acknowledged (the stream resends from there)."""
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
        offers = list(d.idle())
        running = {a.worker for a in self.table.running()}
        for n in sorted({*self.known_workers, *running}):
            o = d.offer(n)
            if o is not None and o.state != "idle":
                # mDNS says which app a worker serves (TXT): the stream told us these.
                offers.append(dataclasses.replace(o, app=self.app))
        return ev.Seen(tuple(offers))

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
                self.node.send(w.node, StageApp(self.app, self.term))
        for n, asked in list(self.recruiting.items()):
            if now - asked > cfg.connect_timeout:
                del self.recruiting[n]
                self._feed(ev.ReserveFailed(now, n, "no answer"))
        for n, t in self.node.world.directory.coordinators(self.app).items():
            if t > self.term and n != self.node.id:
                self.node.send(n, TermQuery(self.app, self.term))
        self._stream()
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
            send(a.offer.node, Reserve(self.app, self.node.id, a.term, self.cfg.reserve_lease))
        elif isinstance(a, ev.Prepare):
            self.links[a.worker] = WorkerView(a.worker, now, now)
            send(a.worker, StageApp(self.app, self.term))
        elif isinstance(a, ev.Launch):
            self._run(a.task, a.attempt, a.worker)
        elif isinstance(a, ev.StageOutputs):
            return self.engine.handle(ev.OutputsStaged(now, a.result.task, a.result.attempt))
        elif isinstance(a, ev.Append):
            assert a.seq == len(self.journal) + 1, (a.seq, len(self.journal))
            self.journal.append(a.entry)
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
                send(a.worker, AppEnded(self.app, self.term, a.outcome, len(self.journal)))
            send(a.worker, Release(self.app, self.term))
        elif isinstance(a, ev.CloseLink):
            self.links.pop(a.worker, None)
        elif isinstance(a, ev.Feed):
            self.acked[a.node] = 0
            self._stream_to(a.node)
        elif isinstance(a, ev.Unfeed):
            self.acked.pop(a.node, None)
        elif isinstance(a, ev.Resync):
            self.acked[a.node] = 0
        elif isinstance(a, ev.MembersChanged):
            m = a.members
            joint = " joint" if m.joint else ""
            self.node.checks.log(f"{self.app} members v{m.version} {m.nodes}{joint}")
            self._stream()
        elif isinstance(a, ev.Probe):
            send(a.node, TermQuery(self.app, self.term))
        elif isinstance(a, ev.SaveRole):
            if a.role == Role.STEPPED_DOWN.value:
                self.node.checks.stepped_down(self.app, self.node.id, a.term)
        elif isinstance(a, ev.Ended):
            if a.outcome in ("finished", "cancelled", "failed"):
                self.node.checks.app_ended(self.app, self.term, self.node.id, a.outcome, self.table)
            self._close()
        return []

    def _run(self, task: str, attempt: int, worker: str) -> None:
        cpus = self.spec.task(task).requirements.cpus
        duration, code = self.node.world.workload.behaviour(self.app, task, attempt)
        self.node.send(worker, RunTask(self.app, self.term, task, attempt, cpus, duration, code))

    def _stream(self) -> None:
        for r in list(self.acked):
            self._stream_to(r)

    def _stream_to(self, r: str) -> None:
        """Send replica ``r`` the journal from what it acknowledged (its heartbeat too)."""
        start = self.acked.get(r, 0)
        self.node.send(
            r,
            JournalAppend(
                self.app,
                self.term,
                self.node.id,
                self.spec,
                start,
                tuple(self.journal[start:]),
                self.members,
                tuple(self.links),
            ),
        )

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        if self.closed:
            return
        now = self.node.clock.now
        if src in self.links and not isinstance(msg, (ReserveReply, Stale)):
            self.links[src].last_heard = now
        if isinstance(msg, TaskResult):
            code, secs = msg.exit_code, msg.seconds
            r = cm.TaskResult(self.app, msg.task, msg.attempt, code, secs, "", b"", _NO_OUTPUTS)
            self._feed(ev.FromWorker(now, src, r))
        elif isinstance(msg, HeartbeatAck):
            self._heartbeat_ack(src, msg)
        elif isinstance(msg, ReserveReply):
            self._reserve_reply(src, msg)
        elif isinstance(msg, StageAck):
            w = self.links.get(src)
            if w is not None and not w.staged and msg.ok:
                w.staged = True
                self._feed(ev.Prepared(now, src))
                self.wake()
        elif isinstance(msg, JournalAck):
            if src in self.acked and msg.term == self.term:
                if msg.members < 0:  # it lost its copy: send it all again
                    ack = cm.JournalAck(self.app, msg.term, 0, False)
                else:
                    self.acked[src] = max(self.acked[src], msg.length)
                    ack = cm.JournalAck(self.app, msg.term, msg.length, True, msg.members)
                self._feed(ev.FromWorker(now, src, ack))
            elif msg.term > self.term:
                self._feed(ev.TermSeen(now, msg.term))
        elif isinstance(msg, AppEndedAck):
            pass
        elif isinstance(msg, Stale):
            if msg.term > self.term:
                self._feed(ev.TermSeen(now, msg.term))
            elif not msg.serving:
                self._feed(ev.MemberState(now, src, msg.term, ""))
                if src in self.links:
                    self.links.pop(src, None)
                    self._feed(ev.LinkLost(now, src, "serves something else"))

    def _heartbeat_ack(self, src: str, m: HeartbeatAck) -> None:
        if src not in self.links:
            return
        now = self.node.clock.now
        running = tuple(f"{t}#{a}" for t, a in m.running)
        self._feed(ev.FromWorker(now, src, cm.HeartbeatAck(self.app, m.term, running)))
        if self.closed or m.term != self.term:
            return
        reported = set(m.running)
        ledger = self.engine.ledger
        for key, (n, _) in list(ledger.running.items()):
            if n == src and key not in reported and key not in ledger.in_flight:
                self._run(key[0], key[1], src)  # lost on the way? the worker ignores repeats

    def _reserve_reply(self, src: str, m: ReserveReply) -> None:
        now = self.node.clock.now
        if m.term > self.term:
            self.recruiting.pop(src, None)
            self._feed(ev.ReserveFailed(now, src, "fenced", m.term))
            return
        if src not in self.recruiting:
            if m.accepted and src not in self.links:
                self.node.send(src, Release(self.app, self.term))  # too late: let it go
            return
        del self.recruiting[src]
        if not m.accepted:
            self._feed(ev.ReserveFailed(now, src, m.reason))
            return
        offer = self.node.world.directory.offer(src)
        self._feed(ev.Reserved(now, src, src, m.slots, offer))

    # --- the end -------------------------------------------------------------------------------

    def _close(self) -> None:
        self.closed = True
        self.node.remember(self.app, Voter(self.term, self.node.id, self.term))
        self.node.world.directory.withdraw_coordinator(self.app, self.node.id)
        if self.node.coords.get(self.app) is self:  # type: ignore[comparison-overlap]
            del self.node.coords[self.app]
