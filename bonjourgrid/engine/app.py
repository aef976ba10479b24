"""The app engine: one app's coordinator deciding everything, with no I/O (h11's shape).
Events in (``app_events``), actions out, time passed in. The daemon's shell and the
simulation's run the same engine.

Theory of operation::

    Seen/Tick --> recruit (Recruit -> Reserved -> Prepare -> Prepared: ready)
              --> place ready tasks (Placement) --> Append(Started) + Launch
    FromWorker(TaskResult) --> StageOutputs --> OutputsStaged --> Append(Finished)
              --> ... W durable copies (Quorum, JournalAck) ... --> Ack
    LinkLost  --> Append(Abandoned) for all it ran but results in flight
    higher term (HeartbeatAck / JournalAck / Fenced / TermSeen) --> STEPPED_DOWN: no more acks
    all terminal / cancelled / failed --> wait for replicas to hold the end --> Release(outcome)
              --> Ended

Its parts, each an object owning its own state and reaching the engine only through the
narrow ``AppCore`` interface (engine/app_core.py: ``record`` an entry, ``emit`` an action):

* ``Demand`` (demand.py): machines wanted, whom to ask, whom to release, fair share —
  through the ``Placement`` strategy (placement.py) and the pure ``scheduling``/
  ``matchmaking``/``fairshare`` rules.
* ``Commits`` (commit.py): the one commit path — checked, staged, journaled (the entry names
  the worker's own ``seconds``, no clock reading), acknowledged once the ``Quorum`` policy
  says ``W`` copies hold it; not coordinating any more: no ack.
* ``Takeover`` (takeover.py): the takeover rule — re-home the old workers, adopt what they
  confirm, abandon the rest after ``rehome_grace`` (middleware placement: all at once).
* ``Waiting`` (waiting.py, with the ``WaitPolicy``): give up on a task nobody can run; fail
  an app with no worker.

The engine itself keeps the role, the table, the ledger (ledger.py) and the replica set
(replica_set.py), dispatches the events and decides the end.
"""

from __future__ import annotations

from collections.abc import Sequence

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import (
    Fenced,
    GiveBack,
    HeartbeatAck,
    JournalAck,
    TaskResult,
)
from bonjourgrid.engine.app_core import AppTiming
from bonjourgrid.engine.app_events import (
    Action,
    Append,
    BackendResult,
    BackendSaved,
    CancelRequested,
    CloseLink,
    Ended,
    Event,
    Failed,
    FromWorker,
    Launch,
    LaunchFailed,
    LinkLost,
    MemberState,
    NotCommitted,
    Note,
    OutputsStaged,
    Prepare,
    Prepared,
    Release,
    Reserved,
    ReserveFailed,
    Resync,
    SaveRole,
    Seen,
    Stop,
    TermSeen,
    Tick,
)
from bonjourgrid.engine.commit import Commits
from bonjourgrid.engine.demand import Demand
from bonjourgrid.engine.fairshare import Claim
from bonjourgrid.engine.ledger import Key, Ledger, Worker
from bonjourgrid.engine.placement import CorePlacement, Placement
from bonjourgrid.engine.policy import Quorum, WaitPolicy, WriteQuorum
from bonjourgrid.engine.replica_set import ReplicaSet
from bonjourgrid.engine.takeover import Takeover
from bonjourgrid.engine.waiting import Waiting
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.quorum import Members
from bonjourgrid.states import coordinator as cr
from bonjourgrid.states.coordinator import CoordinatorRole, Role
from bonjourgrid.states.tasktable import TaskTable


class AppEngine:
    """One app's coordinator on node ``me``. Feed events with ``handle``; carry out the
    actions in order. ``entries``: the journal so far (a takeover, a resume); ``members``:
    the replica set it knew; ``role``: RECRUITING for a new app, TAKING_OVER after an
    election (``CoordinatorRole.restored(app, Role.TAKING_OVER, term)``)."""

    def __init__(
        self,
        *,
        app: str,
        spec: AppSpec,
        me: str,
        now: float,
        timing: AppTiming | None = None,
        placement: Placement | None = None,
        quorum: Quorum | None = None,
        wait: WaitPolicy | None = None,
        role: CoordinatorRole | None = None,
        entries: Sequence[je.Entry] = (),
        members: Members | None = None,
        hosts: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.spec = spec
        self.me = me
        self.timing = timing or AppTiming()
        self.placement: Placement = placement or CorePlacement(spec.backend)
        self.role = role or CoordinatorRole(app)
        self.table = TaskTable(spec.tasks)
        self.worker_hosts: dict[str, str] = dict(hosts or {})
        for e in entries:
            je.apply(self.table, e)
            if isinstance(e, (je.Started, je.Finished)) and e.worker:
                self.worker_hosts[e.worker] = e.host
        self.seq = len(entries)
        self.ledger = Ledger()
        self.replicas = ReplicaSet(spec.replicas, me, quorum or WriteQuorum(), members or Members())
        self.waiting = Waiting(app, spec, wait or WaitPolicy(spec.wait_timeout))
        self.takeover = Takeover(self)
        """Reconciling the old coordinator's workers (engine/takeover.py; only while taking
        over)."""
        self.commits = Commits(self, self.takeover)
        """The results being committed (engine/commit.py: the one commit path)."""
        self.demand = Demand(self, self.waiting)
        """Machines wanted, asked, released; fair share (engine/demand.py)."""
        self._stopped = False
        self._ending: float | None = None
        self.outcome = ""
        """"" while running; then finished / cancelled / failed / stepped-down (or "stopped")."""
        self._now = now
        self._no_worker_since = now
        self._last_explained = -self.timing.recruit_retry
        self._out: list[Action] = []

    # --- what the shell may read ---------------------------------------------------------

    @property
    def term(self) -> int:
        return self.role.term

    @property
    def done(self) -> bool:
        """``Ended`` was emitted: the engine decides nothing more."""
        return bool(self.outcome)

    @property
    def members(self) -> Members:
        return self.replicas.members

    @property
    def committing(self) -> tuple[Key, ...]:
        """Results being committed: staged or waiting for ``W`` copies, not yet acked."""
        return self.commits.keys

    @property
    def now(self) -> float:
        """The latest time an event brought."""
        return self._now

    def wanted_workers(self, *, fair: bool = True) -> int:
        return self.demand.wanted_workers(fair=fair)

    def claim(self) -> Claim:
        """This app's fair-share claim (its coordinator record's ``w``/``d``/``wt``)."""
        return self.demand.claim()

    def machines(self) -> tuple[int, int]:
        return self.demand.machines()

    def rival_claims(self) -> list[Claim]:
        return self.demand.rival_claims()

    def acting(self) -> bool:
        return self.role.coordinating and not self._stopped

    def counts(self) -> dict[str, int]:
        """Tasks per state (progress)."""
        return {s.value: n for s, n in self.table.counts().items()}

    def wake_at(self) -> float:
        """The latest time the shell should call ``Tick`` (sooner is harmless)."""
        return self._now + min(self.timing.recruit_retry, self.timing.heartbeat_interval)

    # --- events ----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; the actions to carry out, in order."""
        self._out = []
        now = getattr(event, "now", self._now)
        self._now = max(self._now, now)
        if self.done:
            if isinstance(event, BackendResult):
                r = event.result
                self._out.append(NotCommitted(r.task, r.attempt, "the app is not coordinated here"))
            return self._out
        if isinstance(event, Seen):
            self.demand.offers, self.demand.claims = event.offers, event.claims
        elif isinstance(event, Tick):
            self._tick()
        elif isinstance(event, FromWorker):
            self._from_worker(event.worker, event.message)
        elif isinstance(event, BackendResult):
            self.commits.result(event.worker, event.result, via_backend=True)
        elif isinstance(event, OutputsStaged):
            self.commits.staged(event)
        elif isinstance(event, Reserved):
            self._reserved(event)
        elif isinstance(event, ReserveFailed):
            self._reserve_failed(event)
        elif isinstance(event, Prepared):
            self._prepared(event)
        elif isinstance(event, LinkLost):
            self._lost(event.worker, event.reason)
        elif isinstance(event, LaunchFailed):
            self._launch_failed(event)
        elif isinstance(event, MemberState):
            if event.term > self.term:
                self._step_down(event.term)
            elif not event.role:
                self.replicas.holds_nothing(event.node)
        elif isinstance(event, TermSeen):
            self._step_down(event.term)
        elif isinstance(event, CancelRequested):
            if not self.role.ended:
                self.role.handle(cr.Cancel(event.reason))
                self.record(je.Cancelled(event.reason))
                self._save_role()
        elif isinstance(event, BackendSaved):
            if self.acting():
                self.record(je.BackendState(event.backend, dict(event.data)))
        elif isinstance(event, Failed):
            if not self.role.ended:
                self.role.handle(cr.GridFailed(event.reason))
                self.record(je.Cancelled(event.reason))
                self._save_role()
        elif isinstance(event, Stop):
            self._stopped = True
        if isinstance(event, (FromWorker, Prepared)) and self.acting():
            self._replicate()  # a change agreed, a member staged: take the next step now
        self.commits.flush()
        self._maybe_end()
        return self._out

    def _replicate(self) -> None:
        staged = [w.node for w in self.ledger.workers.values() if w.ready]
        settling = self.role.role is Role.TAKING_OVER
        self._out += self.replicas.update(self._now, staged, self.term, settling)

    # --- the journal -------------------------------------------------------------------------

    def record(
        self, entry: je.Entry, *, host: str = "", outputs: bytes = b"", promote: bool = False
    ) -> int:
        """Apply ``entry``; if it changed the table, journal and replicate it (``Append``).
        The entry's number, or 0 when it changed nothing."""
        if not je.apply(self.table, entry):
            return 0
        self.seq += 1
        self._out.append(Append(self.seq, entry, host, outputs, promote))
        return self.seq

    def _save_role(self) -> None:
        r = self.role
        self._out.append(SaveRole(r.role.value, r.term, r.reason, r.ended))

    def emit(self, action: Action) -> None:
        self._out.append(action)

    def note(self, text: str, warning: bool = False) -> None:
        self._out.append(Note(f"app {self.app}: {text}", warning))

    # --- scheduling ------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self.acting():
            return
        now = self._now
        taking_over = self.role.role is Role.TAKING_OVER
        if taking_over and self.takeover.step(now, self.demand.offers):
            self.role.handle(cr.TakeoverDone())
            self._save_role()
        if self.table.finished() and not self.ledger.unconfirmed and not self.commits:
            # The end waits until every result is durable and acknowledged (or a higher
            # term wins): a result is never left committed here alone.
            self.role.handle(cr.AllTasksTerminal())
            self._save_role()
            return
        self.demand.release_useless(now)
        self._place()
        if now - self._last_explained >= self.timing.recruit_retry:
            self._last_explained = now
            capped = self.demand.wanted_workers(fair=True) < self.demand.wanted_workers(fair=False)
            for task, reason in self.waiting.explain(
                now,
                self.table,
                self.demand.offers,
                self.placement.name,
                set(self.ledger.workers),
                self.ledger.refused,
                capped,
                not self.placement.releases_idle,
            ):
                self.note(f"task {task}: {reason}", warning=True)
                self.record(je.GaveUp(task, reason))
        self.demand.release_useless(now)
        self._replicate()
        if self.ledger.workers:
            self._no_worker_since = now
        elif (why := self.waiting.failed(self.table, now - self._no_worker_since)) is not None:
            self.role.handle(cr.GridFailed(why))
            self.record(je.Cancelled(why))
            self._save_role()
            return
        self.demand.recruit(now)

    def _place(self) -> None:
        ready = [self.spec.task(t) for t in self.table.ready()]
        for task_id, node in self.placement.place(ready, self.ledger):
            attempt = self.table.record(task_id).attempts + 1
            host = self.ledger.workers[node].host if node else ""
            if node:
                self.worker_hosts[node] = host
            self.record(je.Started(task_id, attempt, node, host, 0.0), host=host)
            if node:
                self.ledger.start(
                    (task_id, attempt), node, self.spec.task(task_id).requirements.cpus
                )
            self._out.append(Launch(task_id, attempt, node))

    def release(self, node: str, reason: str, outcome: str = "") -> None:
        self.ledger.unlink(node)
        self._out += self.replicas.drop(node)
        self._out.append(Release(node, reason, outcome))

    # --- workers: reservations, preparation, loss --------------------------------------------

    def _reserved(self, e: Reserved) -> None:
        seen = e.offer or next((o for o in self.demand.offers if o.node == e.worker), None)
        self.ledger.link(Worker(e.worker, e.host, e.slots, seen))
        if not self.acting():
            self.release(e.worker, "app ended")
            return
        self._out.append(Prepare(e.worker))

    def _reserve_failed(self, e: ReserveFailed) -> None:
        self.ledger.answered(e.worker)
        self.ledger.refuse(e.worker, e.now)
        self.waiting.last_refusal = f"{e.worker}: {e.reason}"
        self.takeover.answered(e.worker)
        if e.term:
            self._step_down(e.term)

    def _prepared(self, e: Prepared) -> None:
        w = self.ledger.workers.get(e.worker)
        self.takeover.answered(e.worker)
        if w is None:
            return
        if e.error:
            self.note(f"could not prepare {w.host}: {e.error}", warning=True)
            self.ledger.refuse(e.worker, e.now)
            self.release(e.worker, f"preparation failed: {e.error}")
            return
        if not self.acting():
            self.release(e.worker, "app ended")
            return
        w.ready = True
        if self.role.role is not Role.TAKING_OVER:
            self.role.handle(cr.WorkerStaged())

    def _lost(self, node: str, reason: str) -> None:
        """A lost worker: requeue all it ran for us (not a failure), but results in flight."""
        if self.ledger.unlink(node) is None:
            return  # released on purpose already
        self._out += self.replicas.drop(node)
        lost = []
        for a in self.table.running_on(node):
            key = (a.task, a.attempt)
            if key in self.ledger.in_flight:
                continue  # its result arrived; the commit decides
            if self.record(je.Abandoned(a.task, a.attempt, f"worker {node} lost", False)):
                lost.append(f"{a.task}#{a.attempt}")
            self.ledger.settle(key)
        self.note(f"lost worker {node} ({reason}); requeued {', '.join(lost) or 'nothing'}")
        self.ledger.refuse(node, self._now)

    def _launch_failed(self, e: LaunchFailed) -> None:
        self.note(f"launch of {e.task}#{e.attempt} failed: {e.error}", warning=True)
        rec = self.table.record(e.task)
        if not rec.worker and self.table.accepts(e.task, e.attempt, None):
            # No link loss will requeue it: do it here (bounded by the task's max losses).
            self.record(je.Abandoned(e.task, e.attempt, f"launch failed: {e.error}", False))
        # With a worker, the shell closes its link: the loss requeues the attempt.

    # --- what workers send ----------------------------------------------------------------

    def _from_worker(self, worker: str, msg: object) -> None:
        if isinstance(msg, (TaskResult, GiveBack)):
            why = self._not_placed_there(worker, msg.task, msg.attempt)
            if why is not None:
                self.note(f"refused a {type(msg).__name__} from {worker}: {why}", warning=True)
                self._out.append(CloseLink(worker, why))
                return
        if isinstance(msg, TaskResult):
            self.commits.result(worker, msg, via_backend=False)
        elif isinstance(msg, GiveBack):
            self._give_back(worker, msg)
        elif isinstance(msg, HeartbeatAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            self.takeover.reconcile(worker, msg)
        elif isinstance(msg, Fenced):
            self._step_down(msg.term)
        elif isinstance(msg, JournalAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            elif msg.term == self.term:
                if msg.ok:
                    self.replicas.acked(worker, msg.seq, msg.members)
                elif worker in self.replicas.fed:
                    self._out.append(Resync(worker))

    def _not_placed_there(self, worker: str, task: str, attempt: int) -> str | None:
        """Why ``worker`` may not speak for ``task``/``attempt`` (None: it may): only the
        latest attempt changes the table, and only its worker may speak for it."""
        if task not in self.spec.task_ids:
            return None  # dropped later: names no task of ours
        rec = self.table.record(task)
        if attempt == rec.attempts and rec.worker != worker:
            return f"{task}#{attempt} was placed on {rec.worker or 'the CE middleware'}"
        return None

    def _give_back(self, worker: str, msg: GiveBack) -> None:
        """The owner needs the machine: requeue without counting it against retries; let
        the worker go once it runs nothing more of ours."""
        key = (msg.task, msg.attempt)
        if msg.task in self.spec.task_ids and key not in self.ledger.in_flight:
            self.record(je.Abandoned(msg.task, msg.attempt, f"given back: {msg.reason}", False))
        if key not in self.ledger.in_flight:
            self.ledger.settle(key)
        if worker in self.ledger.workers and not self.table.running_on(worker):
            self.ledger.refuse(worker, self._now)
            self.release(worker, msg.reason or "its owner needs the machine")

    def _step_down(self, term: int) -> None:
        """A higher term coordinates the app: stop acting (no acknowledgement from now on)."""
        if self.role.ended or term <= self.term:
            return
        self.role.handle(cr.TermSeen(term))
        if self.role.role is Role.STEPPED_DOWN:
            self.note(f"term {term} coordinates it elsewhere; stepping down", warning=True)
            self._save_role()

    # --- the end ------------------------------------------------------------------------

    def _maybe_end(self) -> None:
        if self.done or (self.acting() and not self.role.ended):
            return
        if self._stopped or self.role.role is Role.STEPPED_DOWN:
            # The app goes on elsewhere (or after a restart): close, no goodbye.
            for n in sorted(self.replicas.fed):
                self._out += self.replicas.drop(n)
            for n in sorted(self.ledger.workers):
                self.ledger.unlink(n)
                self._out.append(CloseLink(n, "no longer coordinating the app"))
            self.replicas.closed = True
            self.outcome = "stopped" if self._stopped else self.role.role.value
            self._out.append(Ended("" if self._stopped else self.outcome))
            return
        if self._ending is None:
            self._ending = self._now
        settled = self.replicas.settled(self.seq)
        if not settled and self._now - self._ending < self.timing.connect_timeout:
            return  # every replica's copy of an ended app must be whole before "app ended"
        if not settled:
            self.note("a replica did not confirm the journal's end", warning=True)
        outcome = self.role.role.value
        for n in sorted(self.replicas.fed):
            self._out += self.replicas.drop(n)
        self.replicas.closed = True
        for n in sorted(self.ledger.workers):
            self.release(n, f"app {outcome}", outcome)
        self.outcome = outcome
        self._out.append(Ended(outcome))


__all__ = ["AppEngine", "AppTiming"]
