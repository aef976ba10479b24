"""The coordinator of one app on a simulated machine, built on the product's pure logic.

What is the product's: the role (``CoordinatorRole``), the table (``TaskTable``, changed
only by applying journal entries from ``faulttolerance.entries``), placement, recruiting,
releasing and the choice of replicas (``coordinator.scheduling``/``matchmaking``). What is
glue: the message plumbing that ``AppCoordinator``/``WorkerLink`` do over TCP, here one
``tick`` per heartbeat interval (heartbeats, loss detection, resends, journal streaming) and
one ``step`` whenever something changed (finish, place, recruit, release).

A result is acknowledged to its worker once its ``Finished`` entry is applied here and a
write quorum of the replica set holds it (``faulttolerance/quorum.py``: ``W`` of every set in
force; at once when the set is empty). The set changes one member at a time, journaled with
the entries (``JournalAppend.members``), and a change counts once ``W`` of the old and of the
new set acknowledged it: a coordinator cut off from its set commits nothing and cannot refill
the set from its side of a partition. A
coordinator built by a takeover starts ``TAKING_OVER``: it reserves the known workers again
with its higher term (a re-home), keeps the attempts they report running or holding,
abandons the rest as lost, and then runs like any coordinator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.scheduling import (
    WorkerSlots,
    choose_replicas,
    place,
    releasable,
    to_ask,
    wanted_workers,
)
from bonjourgrid.faulttolerance.entries import (
    Abandoned,
    Cancelled,
    Entry,
    Finished,
    Started,
    apply,
    replay,
)
from bonjourgrid.faulttolerance.quorum import Members, Voter, next_members
from bonjourgrid.sim.clock import Timer
from bonjourgrid.sim.messages import (
    AppEnded,
    AppEndedAck,
    CancelTask,
    Heartbeat,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Key,
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
from bonjourgrid.states.coordinator import (
    AllTasksTerminal,
    CoordinatorRole,
    GridFailed,
    Role,
    TakeoverDone,
    TermSeen,
    WorkerStaged,
)
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState
from bonjourgrid.states.tasktable import TaskTable

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode

BACKEND = "embedded"


@dataclass
class WorkerView:
    """What the coordinator knows of one linked worker (``WorkerLink`` in the product)."""

    node: str
    slots: int
    offer: Offer | None
    last_heard: float
    stage_sent: float
    ready: bool = False
    used: int = 0


@dataclass
class _Pending:
    """A result committed here, waiting for a replica before it is acknowledged."""

    index: int
    done: bool
    worker: str
    waiters: set[str] = field(default_factory=set)


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
        self.role = role
        self.cfg = node.world.config
        self.journal: list[Entry] = list(journal or [])
        self.table = replay(TaskTable(spec.tasks), self.journal)
        self.links: dict[str, WorkerView] = {}
        self.recruiting: dict[str, float] = {}
        self.refused: dict[str, float] = {}
        self.running: dict[Key, str] = {}
        self.members = members or Members()
        """The replica set (this node too, right after a takeover, until it steps out)."""
        self.rep_acked: dict[str, int] = {}
        """Entries each member acknowledged in this term."""
        self.rep_version: dict[str, int] = {}
        """The set version each member acknowledged in this term."""
        self.empty: set[str] = set()
        """Members that answered they hold nothing of the app (restarted, released)."""
        self.pending: dict[Key, _Pending] = {}
        self._declared: set[Key] = set()
        """Results this coordinator declared committed (and acknowledged)."""
        self._missing: dict[Key, float] = {}
        """Attempts their worker did not report running, since when."""
        self.closed = False
        self._ending_since: float | None = None
        self._ended_acks: set[str] = set()
        self._last_recruit = -1e9
        self._no_worker_since = node.clock.now
        self._step_timer: Timer | None = None
        self._rehome: dict[str, bool] = {}
        now = node.clock.now
        node.checks.term_claimed(app, role.term, node.id, now)
        node.world.directory.publish_coordinator(app, node.id, role.term)
        if role.role is Role.TAKING_OVER:
            targets = set(known_workers) | {a.worker for a in self.table.running()}
            for n in sorted(targets):
                self._rehome[n] = False
                self.node.send(n, Reserve(app, node.id, role.term, self.cfg.reserve_lease))
            node.later(self.cfg.connect_timeout, self._finish_rehome)
        self._members_step()
        node.later(0.0, self._tick)

    @property
    def term(self) -> int:
        return self.role.term

    @property
    def replicas(self) -> list[str]:
        """The other members of every set in force: whom the journal is streamed to."""
        return [n for n in self.members.everyone() if n != self.node.id]

    # --- the two loops -------------------------------------------------------------------------

    def _tick(self) -> None:
        """Every heartbeat interval: heartbeats, loss detection, resends, journal streaming."""
        if self.closed:
            return
        now = self.node.clock.now
        cfg = self.cfg
        for w in list(self.links.values()):
            if now - w.last_heard > cfg.suspect_after:
                self._lose(w.node, "silent")
                continue
            self.node.send(w.node, Heartbeat(self.app, self.term, cfg.reserve_lease))
            if not w.ready and now - w.stage_sent > 2 * cfg.heartbeat_interval:
                w.stage_sent = now
                self.node.send(w.node, StageApp(self.app, self.term))
        for n, asked in list(self.recruiting.items()):
            if now - asked > cfg.connect_timeout:
                del self.recruiting[n]
                self.refused[n] = now
        self._members_step()
        self._check_durable()
        self._stream()
        for n, t in self.node.world.directory.coordinators(self.app).items():
            if t > self.term and n != self.node.id:
                self.node.send(n, TermQuery(self.app, self.term))
        if self._ending_since is not None:
            self._end_step(now)
        else:
            self._step()
        if not self.closed:
            self.node.later(cfg.heartbeat_interval, self._tick)

    def wake(self) -> None:
        if self._step_timer is None and not self.closed:
            self._step_timer = self.node.later(0.0, self._step)

    def _step(self) -> None:
        self._step_timer = None
        if self.closed or not self.role.coordinating:
            return
        now = self.node.clock.now
        if self.role.role is Role.TAKING_OVER:
            return
        if self.table.finished():
            if self.pending:
                return  # the end waits until every result is durable (or a higher term wins)
            self.role.handle(AllTasksTerminal())
            self._ending_since = now
            self._end_step(now)
            return
        ready = [self.spec.task(t) for t in self.table.ready()]
        slots = [
            WorkerSlots(w.node, w.slots - w.used, w.offer, w.ready) for w in self.links.values()
        ]
        placed = place(ready, slots, BACKEND)
        for task, worker in placed:
            self._start(task, worker, now)
        unplaced = len(ready) - len(placed)
        if unplaced and now - self._last_recruit >= self.cfg.recruit_retry:
            self._recruit(unplaced, now)
        holding = {p.worker for p in self.pending.values()}  # keep it until acknowledged
        idle = [
            w.node for w in self.links.values() if w.ready and w.used == 0 and w.node not in holding
        ]
        for n in releasable(ready_tasks=unplaced, idle_workers=idle, replicas=self.replicas):
            self._release(n)
        if self.links:
            self._no_worker_since = now
        elif now - self._no_worker_since > self.cfg.recruit_timeout:
            reason = f"no suitable volunteer answered within {self.cfg.recruit_timeout:g} s"
            self.role.handle(GridFailed(reason))
            self._append(Cancelled(reason))
            self._ending_since = now

    # --- scheduling ----------------------------------------------------------------------------

    def _start(self, task_id: str, worker: str, now: float) -> None:
        attempt = self.table.record(task_id).attempts + 1
        self._append(Started(task_id, attempt, worker, worker, now))
        cpus = self.spec.task(task_id).requirements.cpus
        self.running[(task_id, attempt)] = worker
        self.links[worker].used += cpus
        duration, code = self.node.world.workload.behaviour(self.app, task_id, attempt)
        self.node.send(worker, RunTask(self.app, self.term, task_id, attempt, cpus, duration, code))

    def _recruit(self, unplaced: int, now: float) -> None:
        self._last_recruit = now
        wanted = wanted_workers(
            unplaced=unplaced,
            recruiting=len(self.recruiting),
            linked=len(self.links),
            limit=self.spec.workers or len(self.spec.tasks),
        )
        if wanted <= 0:
            return
        busy = set(self.links) | set(self.recruiting)
        busy |= {n for n, t in self.refused.items() if now - t < 2.0}
        needs = [
            self.spec.task(r.id).requirements
            for r in self.table.records()
            if r.state not in TERMINAL_STATES
        ]
        offers = self.node.world.directory.idle()
        for o in to_ask(self.app, offers, needs, BACKEND, exclude=busy, wanted=wanted):
            self.recruiting[o.node] = now
            self.node.send(
                o.node, Reserve(self.app, self.node.id, self.term, self.cfg.reserve_lease)
            )

    def _release(self, n: str) -> None:
        self.links.pop(n, None)
        self.node.send(n, Release(self.app, self.term))

    def _append(self, entry: Entry) -> bool:
        """The only way the table changes: apply an entry and journal it."""
        if not apply(self.table, entry):
            return False
        self.journal.append(entry)
        return True

    def _lose(self, n: str, reason: str) -> None:
        self.links.pop(n, None)
        self.refused[n] = self.node.clock.now
        for a in self.table.running_on(n):
            self._append(Abandoned(a.task, a.attempt, f"worker {n} {reason}", False))
            self.running.pop((a.task, a.attempt), None)
        self._members_step()
        self.wake()

    def _members_step(self) -> None:
        """Confirm an agreed change of the replica set, then take the next one-member step
        toward the wanted set (``choose_replicas`` over the staged workers, never this node);
        none while taking over (the members are not re-homed yet)."""
        if self.closed or not self.role.coordinating or self.spec.replicas <= 0:
            return
        me, before = self.node.id, self.members
        if self.members.joint:
            versions = {**self.rep_version, me: self.members.version}
            if not self.members.agreed(versions, self.empty):
                return
            self.members = self.members.confirm()
        if self.role.role is not Role.TAKING_OVER:
            current = [n for n in self.members.nodes if n != me]
            staged = [
                w.node
                for w in self.links.values()
                if w.ready and w.node != me and w.node not in self.empty
            ]
            wanted = choose_replicas(current, staged, self.spec.replicas)
            step = next_members(self.members.nodes, wanted, self.empty)
            if step is not None:
                self.members = self.members.change(step)
        if self.members != before:
            self.node.checks.log(
                f"{self.app} members v{self.members.version} {self.members.nodes}"
                f"{' joint' if self.members.joint else ''}"
            )
            self._stream()
            self._check_durable()

    # --- messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        if self.closed:
            return
        if isinstance(msg, TaskResult):
            self._result(src, msg)
        elif isinstance(msg, HeartbeatAck):
            self._heartbeat_ack(src, msg)
        elif isinstance(msg, ReserveReply):
            self._reserve_reply(src, msg)
        elif isinstance(msg, StageAck):
            w = self.links.get(src)
            if w is not None and not w.ready and msg.ok and self.role.coordinating:
                w.ready = True
                w.last_heard = self.node.clock.now
                self.role.handle(WorkerStaged())
                self._members_step()
                self.wake()
        elif isinstance(msg, JournalAck):
            if msg.term == self.term and src in self.members.everyone():
                if msg.members < 0:  # it lost its copy: send it all again
                    self.rep_acked[src] = 0
                    self.rep_version.pop(src, None)
                else:
                    self.rep_acked[src] = max(self.rep_acked.get(src, 0), msg.length)
                    self.rep_version[src] = max(self.rep_version.get(src, -1), msg.members)
                    self.empty.discard(src)
                self._members_step()
                self._check_durable()
        elif isinstance(msg, AppEndedAck):
            self._ended_acks.add(src)
        elif isinstance(msg, Stale):
            self._stale(src, msg)

    def _stale(self, src: str, m: Stale) -> None:
        if m.term > self.term:
            self._saw_term(m.term)
        elif not m.serving:
            if src in self.members.everyone():
                self._emptied(src)
            if src in self.links:
                self._lose(src, "serves something else")
            self._members_step()

    def _emptied(self, src: str) -> None:
        """Member ``src`` holds nothing of the app: it can vote for no one, its acks are
        void, and it counts as agreeing to its own removal."""
        self.empty.add(src)
        self.rep_acked[src] = 0
        self.rep_version.pop(src, None)

    def _saw_term(self, term: int) -> None:
        if self.role.ended or term <= self.term:
            return
        self.role.handle(TermSeen(term))
        if self.role.role is Role.STEPPED_DOWN:
            self.node.checks.stepped_down(self.app, self.node.id, self.role.term)
            self._close()

    def _heartbeat_ack(self, src: str, m: HeartbeatAck) -> None:
        w = self.links.get(src)
        if w is None or m.term != self.term:
            return
        now = self.node.clock.now
        w.last_heard = now
        reported = set(m.running)
        for key in reported:
            if self.running.get(key) != src and not self._adopt(src, key):
                self.node.send(src, CancelTask(self.app, self.term, key[0], key[1]))
        for key, n in list(self.running.items()):
            if n != src or key in reported or key in self.pending:
                self._missing.pop(key, None)
                continue
            if self.table.record(key[0]).state is not TaskState.RUNNING:
                continue
            since = self._missing.setdefault(key, now)
            if now - since > self.cfg.suspect_after:
                # Neither running nor held there (its result went to someone else): requeue.
                self._missing.pop(key)
                self.running.pop(key)
                w.used -= self.spec.task(key[0]).requirements.cpus
                self._append(Abandoned(key[0], key[1], f"not on worker {src}", False))
                self.wake()
            elif since == now:
                cpus = self.spec.task(key[0]).requirements.cpus
                duration, code = self.node.world.workload.behaviour(self.app, key[0], key[1])
                run = RunTask(self.app, self.term, key[0], key[1], cpus, duration, code)
                self.node.send(src, run)  # lost on the way? the worker ignores repeats

    def _reserve_reply(self, src: str, m: ReserveReply) -> None:
        now = self.node.clock.now
        if m.term > self.term:
            self._saw_term(m.term)
            return
        rehoming = src in self._rehome and not self._rehome[src]
        if not m.accepted:
            self.recruiting.pop(src, None)
            self.refused[src] = now
            if rehoming:
                self._rehome[src] = True
                if all(self._rehome.values()):
                    self._finish_rehome()
            return
        if src in self.links:
            return  # a duplicate
        if self.role.ended or (src not in self.recruiting and not rehoming):
            self.node.send(src, Release(self.app, self.term))  # too late: let it go
            return
        self.recruiting.pop(src, None)
        self.links[src] = WorkerView(src, m.slots, self.node.world.directory.offer(src), now, now)
        self.node.send(src, StageApp(self.app, self.term))
        if rehoming:
            self._rehome[src] = True
            for key in (*m.running, *m.held):
                self._adopt(src, key)
            if all(self._rehome.values()):
                self._finish_rehome()

    def _adopt(self, src: str, key: Key) -> bool:
        """Take on an attempt a worker reports: ours, or one whose ``Started`` we never got.

        A takeover can miss the last ``Started`` entries (they stream on the next tick). The
        worker's report is then the only record of that attempt: it is journaled here rather
        than cancelled, so its number is never handed out twice.
        """
        if key[0] not in self.spec.task_ids or (w := self.links.get(src)) is None:
            return False
        rec = self.table.record(key[0])
        if rec.state is TaskState.READY and rec.attempts == key[1] - 1:
            self._append(Started(key[0], key[1], src, src, self.node.clock.now))
        elif not (rec.state is TaskState.RUNNING and rec.attempts == key[1]):
            return False
        if self.running.get(key) != src:
            self.running[key] = src
            w.used += self.spec.task(key[0]).requirements.cpus
        return True

    def _finish_rehome(self) -> None:
        if self.closed or self.role.role is not Role.TAKING_OVER:
            return
        for a in self.table.running():
            if (a.task, a.attempt) not in self.running:
                self._append(Abandoned(a.task, a.attempt, "lost in the takeover", False))
        for i, e in enumerate(self.journal, start=1):
            # Results in the journal whose worker is gone: nobody will send them again, so
            # they are committed here once this term's write quorum holds them.
            if not isinstance(e, Finished):
                continue
            rec, key = self.table.record(e.task), (e.task, e.attempt)
            if (
                rec.attempts == e.attempt
                and rec.worker not in self.links
                and key not in self.pending
            ):
                done = rec.state is TaskState.DONE
                self.pending[key] = _Pending(i, done, rec.worker or "", set())
        self.role.handle(TakeoverDone())
        self._members_step()
        self.wake()

    def _result(self, src: str, r: TaskResult) -> None:
        if r.task not in self.spec.task_ids:
            return
        key = (r.task, r.attempt)
        p = self.pending.get(key)
        if p is not None:
            p.waiters.add(src)
            return
        n = self.running.pop(key, None)
        if n is not None and (w := self.links.get(n)) is not None:
            w.used -= self.spec.task(r.task).requirements.cpus
        if not self.role.coordinating:
            if self.role.role is not Role.STEPPED_DOWN:
                self.node.send(src, ResultAck(self.app, r.task, r.attempt, self.term))
            return
        now = self.node.clock.now
        rec = self.table.record(r.task)
        if rec.state is TaskState.READY and rec.attempts == r.attempt - 1:
            # Its Started entry died with the old coordinator: the result is the record.
            self._append(Started(r.task, r.attempt, src, src, now))
        entry = Finished(r.task, r.attempt, r.exit_code, r.seconds, now, term=self.term)
        if self._append(entry):
            done = self.table.state(r.task) is TaskState.DONE
            self.pending[key] = _Pending(len(self.journal), done, src, {src})
            self._stream()
            self._check_durable()
        elif key not in self._declared and (index := self._entry_of(key)):
            # Its entry came with an earlier term's journal, maybe never committed there: it
            # is, once this term's write quorum holds it.
            rec = self.table.record(r.task)
            done = rec.state is TaskState.DONE and rec.attempts == r.attempt
            self.pending[key] = _Pending(index, done, src, {src})
            self._check_durable()
        else:
            self.node.send(src, ResultAck(self.app, r.task, r.attempt, self.term))
        self.wake()

    def _entry_of(self, key: Key) -> int:
        """The number of the ``Finished`` entry of ``key`` in the journal, 0 if none."""
        for i, e in enumerate(self.journal, start=1):
            if isinstance(e, Finished) and (e.task, e.attempt) == key:
                return i
        return 0

    def _check_durable(self) -> None:
        if not self.pending:
            return
        acked = {**self.rep_acked, self.node.id: len(self.journal)}
        for key, p in list(self.pending.items()):
            if not self.members.durable(acked, p.index):
                continue  # no write quorum holds it yet: the worker keeps the result
            del self.pending[key]
            self._declared.add(key)
            if p.done:
                self.node.checks.committed(self.app, key, self.term, self.node.id, p.worker)
            for w in p.waiters:
                self.node.send(w, ResultAck(self.app, key[0], key[1], self.term))

    def _stream(self) -> None:
        """Send each replica the journal from what it acknowledged (its heartbeat too)."""
        replicas = self.replicas
        if not replicas:
            return
        workers = tuple(self.links)
        for r in replicas:
            start = self.rep_acked.get(r, 0)
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
                    workers,
                ),
            )

    # --- the end -------------------------------------------------------------------------------

    def _end_step(self, now: float) -> None:
        """Replicas hear the end (with the whole journal) before anyone is released."""
        n = len(self.journal)
        synced = all(self.rep_acked.get(r, 0) >= n for r in self.replicas)
        waited = now - (self._ending_since or now)
        if not synced and waited < self.cfg.suspect_after:
            return
        outcome = self.role.role.value
        missing = [r for r in self.replicas if r not in self._ended_acks]
        if missing and waited < 2 * self.cfg.suspect_after:
            for r in missing:
                self.node.send(r, AppEnded(self.app, self.term, outcome, n))
            return
        for w in list(self.links):
            self._release(w)
        self._close()
        self.node.checks.app_ended(self.app, self.term, self.node.id, outcome, self.table)

    def _close(self) -> None:
        self.closed = True
        self.node.remember(self.app, Voter(self.term, self.node.id, self.term))
        self.node.world.directory.withdraw_coordinator(self.app, self.node.id)
        if self.node.coords.get(self.app) is self:
            del self.node.coords[self.app]
