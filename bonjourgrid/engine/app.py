"""The app engine: one app's coordinator deciding everything, with no I/O (h11's shape).
Events in (``app_events``), actions out, time passed in. The daemon's shell and the
simulation's run the same engine.

Theory of operation (the rules of coordinator/app_coordinator.py and its parts, in one
owner)::

    Seen/Tick --> recruit (Recruit -> Reserved -> Prepare -> Prepared: ready)
              --> place ready tasks (Placement) --> Append(Started) + Launch
    FromWorker(TaskResult) --> StageOutputs --> OutputsStaged --> Append(Finished)
              --> ... W durable copies (Quorum, JournalAck) ... --> Ack
    LinkLost  --> Append(Abandoned) for all it ran but results in flight
    higher term (HeartbeatAck / JournalAck / Fenced / TermSeen) --> STEPPED_DOWN: no more acks
    all terminal / cancelled / failed --> wait for replicas to hold the end --> Release(outcome)
              --> Ended

* **Placement, recruitment, release**: ``scheduling``/``matchmaking``/``fairshare`` (pure),
  through the ``Placement`` strategy (engine/placement.py).
* **Commit**: a result is checked (placed on that worker; outputs hash), staged, journaled
  (``Append``; the entry names the worker's own ``seconds``, no clock reading), and
  acknowledged (``Ack``) only once the ``Quorum`` policy says ``W`` copies hold it. A duplicate
  is acknowledged once the journal as it stands is durable. Not coordinating any more: no ack.
* **Takeover rule** (the product's): an engine built with role TAKING_OVER re-homes the old
  workers (``Recruit(rehome=True)``). With core placement every running attempt in the
  journal is *unconfirmed*: it is **adopted** if its worker says it runs it
  (``HeartbeatAck.running``) or sends its result; it is **abandoned** (requeued, not a
  failure) when its worker says it does not, is lost, or has not confirmed within
  ``rehome_grace`` after the re-homes were answered. An attempt the journal lacks — the
  *next* attempt of a ready task, whose ``Started`` was lost with the old coordinator — is
  adopted (journaled) when a worker this takeover re-homed reports it running or sends its
  result (no other worker is believed), so no
  attempt number is handed out twice and no result is dropped as a duplicate. With middleware
  placement every running attempt is abandoned at once (the old head's queue is gone).
* **Waiting**: ``WaitPolicy`` (give up on a task nobody can run; fail an app with no worker).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import (
    Fenced,
    GiveBack,
    HeartbeatAck,
    JournalAck,
    TaskResult,
    is_refusal,
)
from bonjourgrid.engine import fairshare, scheduling
from bonjourgrid.engine.app_events import (
    Ack,
    Action,
    Append,
    BackendResult,
    CancelRequested,
    CloseLink,
    Discard,
    Ended,
    Event,
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
    Recruit,
    Release,
    Reserved,
    ReserveFailed,
    Resync,
    SaveRole,
    Seen,
    StageOutputs,
    Stop,
    TermSeen,
    Tick,
)
from bonjourgrid.engine.ledger import Key, Ledger, Worker
from bonjourgrid.engine.matchmaking import Offer
from bonjourgrid.engine.placement import CorePlacement, Placement
from bonjourgrid.engine.policy import Quorum, WaitPolicy, WriteQuorum
from bonjourgrid.engine.replica_set import ReplicaSet
from bonjourgrid.engine.waiting import Waiting
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.quorum import Members
from bonjourgrid.states import coordinator as cr
from bonjourgrid.states.coordinator import CoordinatorRole, Role
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState
from bonjourgrid.states.tasktable import TaskTable


@dataclass(frozen=True)
class AppTiming:
    """The engine's timings (``bonjourgrid.config.Config`` has them by the same names)."""

    recruit_retry: float = 1.0
    heartbeat_interval: float = 0.5
    rehome_grace: float = 4.0
    connect_timeout: float = 2.0
    recruit_timeout: float = 30.0
    refusal_backoff: float = 2.0
    """Seconds before asking again a volunteer that refused us."""


@dataclass
class _Commit:
    """A result being committed: staged, then journaled as ``seq``, then acknowledged."""

    worker: str
    host: str
    result: TaskResult
    via_backend: bool
    seq: int = -1
    """-1 while its outputs are staged; then the entry to wait for."""


@dataclass
class _Takeover:
    answers: set[str] = field(default_factory=set)
    """Re-homes not answered yet (the grace starts once all are)."""
    deadline: float | None = None
    rehomed: set[str] = field(default_factory=set)
    """Every worker re-homed by this takeover (the only ones whose unknown attempts are
    adopted: any other linked worker could claim a ready task it was never given)."""


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
        self.offers: tuple[Offer, ...] = ()
        self.claims: tuple[fairshare.Claim, ...] = ()
        self._hungry_since: dict[str, float] = {}
        self._commits: dict[Key, _Commit] = {}
        self._takeover: _Takeover | None = None
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
        return tuple(self._commits)

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
            self.offers, self.claims = event.offers, event.claims
        elif isinstance(event, Tick):
            self._tick()
        elif isinstance(event, FromWorker):
            self._from_worker(event.worker, event.message)
        elif isinstance(event, BackendResult):
            self._result(event.worker, event.result, via_backend=True)
        elif isinstance(event, OutputsStaged):
            self._staged(event)
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
                self._record(je.Cancelled(event.reason))
                self._save_role()
        elif isinstance(event, Stop):
            self._stopped = True
        if isinstance(event, (FromWorker, Prepared)) and self.acting():
            self._replicate()  # a change agreed, a member staged: take the next step now
        self._flush_commits()
        self._maybe_end()
        return self._out

    def _replicate(self) -> None:
        staged = [w.node for w in self.ledger.workers.values() if w.ready]
        settling = self.role.role is Role.TAKING_OVER
        self._out += self.replicas.update(self._now, staged, self.term, settling)

    # --- the journal -------------------------------------------------------------------------

    def _record(
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

    def _note(self, text: str, warning: bool = False) -> None:
        self._out.append(Note(f"app {self.app}: {text}", warning))

    # --- scheduling ------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self.acting():
            return
        now = self._now
        if self.role.role is Role.TAKING_OVER:
            self._takeover_step(now)
        if self.table.finished() and not self.ledger.unconfirmed and not self._commits:
            # The end waits until every result is durable and acknowledged (or a higher
            # term wins): a result is never left committed here alone.
            self.role.handle(cr.AllTasksTerminal())
            self._save_role()
            return
        self._release_useless(now)
        self._place()
        if now - self._last_explained >= self.timing.recruit_retry:
            self._last_explained = now
            capped = self.wanted_workers(fair=True) < self.wanted_workers(fair=False)
            for task, reason in self.waiting.explain(
                now,
                self.table,
                self.offers,
                self.placement.name,
                set(self.ledger.workers),
                self.ledger.refused,
                capped,
                not self.placement.releases_idle,
            ):
                self._note(f"task {task}: {reason}", warning=True)
                self._record(je.GaveUp(task, reason))
        self._release_useless(now)
        self._replicate()
        if self.ledger.workers:
            self._no_worker_since = now
        elif (why := self.waiting.failed(self.table, now - self._no_worker_since)) is not None:
            self.role.handle(cr.GridFailed(why))
            self._record(je.Cancelled(why))
            self._save_role()
            return
        self._recruit(now)

    def _place(self) -> None:
        ready = [self.spec.task(t) for t in self.table.ready()]
        for task_id, node in self.placement.place(ready, self.ledger):
            attempt = self.table.record(task_id).attempts + 1
            host = self.ledger.workers[node].host if node else ""
            if node:
                self.worker_hosts[node] = host
            self._record(je.Started(task_id, attempt, node, host, 0.0), host=host)
            if node:
                self.ledger.start(
                    (task_id, attempt), node, self.spec.task(task_id).requirements.cpus
                )
            self._out.append(Launch(task_id, attempt, node))

    def wanted_workers(self, *, fair: bool = True) -> int:
        """More volunteers to ask for now; with ``fair``, no further than this app's fair
        share while rivals want machines too (fairshare.recruit_cap)."""
        limit = self.spec.workers if self.spec.workers is not None else len(self.spec.tasks)
        if fair and (rivals := self.rival_claims()):
            limit = min(limit, fairshare.recruit_cap(self.claim(), rivals, self.machines()[0]))
        unplaced = self.placement.unplaced(
            len(self.table.ready()), len(self.table.running()), self.ledger
        )
        return scheduling.wanted_workers(
            unplaced=unplaced,
            recruiting=len(self.ledger.recruiting),
            linked=len(self.ledger.workers),
            limit=limit,
        )

    def _recruit(self, now: float) -> None:
        back = self.timing.refusal_backoff
        busy = set(self.ledger.workers) | self.ledger.recruiting
        busy |= {n for n, t in self.ledger.refused.items() if now - t < back}
        self._recall_members(busy)
        wanted = self.wanted_workers()
        if wanted <= 0:
            return
        needs = [
            self.spec.task(r.id).requirements
            for r in self.table.records()
            if r.state not in TERMINAL_STATES
        ]
        for o in scheduling.to_ask(
            self.app, self.offers, needs, self.placement.name, exclude=busy, wanted=wanted
        ):
            self.ledger.asking(o.node)
            self._out.append(Recruit(o, self.term))

    def _recall_members(self, busy: set[str]) -> None:
        """Reserve again a replica-set member whose link was lost (its lease ran out behind a
        partition) once it is seen idle: it kept its copy's votes, and the set may need its
        acknowledgement to commit or to change. A member that said it holds nothing is not
        asked back (the set drops it): it may have restarted and forgotten a vote."""
        lost = [
            n
            for n in self.replicas.ranks
            if n != self.me and n not in busy and n not in self.replicas.empty
        ]
        if not lost:
            return
        for o in self.offers:
            if o.node in lost and o.state == "idle" and not o.owner_busy:
                self.ledger.asking(o.node)
                self._out.append(Recruit(o, self.term))

    def _release(self, node: str, reason: str, outcome: str = "") -> None:
        self.ledger.unlink(node)
        self._out += self.replicas.drop(node)
        self._out.append(Release(node, reason, outcome))

    def _release_useless(self, now: float) -> None:
        if not self.placement.releases_idle:
            return  # the middleware knows which machine is idle, we do not: keep all
        idle = self.ledger.idle()
        held = self.ledger.held()
        offers = [self.ledger.workers[n].offer for n in idle]
        ready = self.waiting.ready_fitting(self.table, offers, self.placement.name)
        for node in scheduling.releasable(
            ready_tasks=ready, idle_workers=idle, replicas=self.replicas.ranks
        ):
            if node not in held:
                self._release(node, "no task left for this worker")
        rivals = self.rival_claims()
        if not rivals:
            return
        idle = self.ledger.idle()
        keep = set(self.replicas.ranks) | self.ledger.held()
        machines, idle_machines = self.machines()
        count = fairshare.release_count(self.claim(), rivals, machines, idle_machines)
        for node in fairshare.choose_release(idle, count, keep) if count > 0 else []:
            self.ledger.refuse(node, now)  # do not ask it back at once
            self._release(node, "fair share: a rival coordinator needs machines")

    # --- fair share (engine/fairshare.py) --------------------------------------------------

    def machines(self) -> tuple[int, int]:
        """Volunteers seen (idle or serving someone), and how many of them are idle."""
        states = [o.state for o in self.offers if not o.owner_busy]
        return sum(s in ("idle", "worker") for s in states), states.count("idle")

    def claim(self) -> fairshare.Claim:
        """This app's claim, as published in its coordinator record (TXT ``w``/``d``/``wt``)."""
        more = self.wanted_workers(fair=False) + len(self.ledger.recruiting)
        return fairshare.Claim(
            self.app, len(self.ledger.workers), min(more, self.machines()[0]), self.spec.weight
        )

    def rival_claims(self) -> list[fairshare.Claim]:
        """The other apps' claims with the workers the volunteers say serve each; a rival no
        volunteer served for twice ``recruit_timeout`` is a dead coordinator's record."""
        now = self._now
        held: dict[str, int] = {}
        for o in self.offers:
            if o.state == "worker" and o.app is not None:
                held[o.app] = held.get(o.app, 0) + 1
        out: list[fairshare.Claim] = []
        for c in self.claims:
            if c.app == self.app:
                continue
            n = held.get(c.app, 0)
            if n:
                self._hungry_since.pop(c.app, None)
            elif now - self._hungry_since.setdefault(c.app, now) > 2 * self.timing.recruit_timeout:
                continue
            out.append(fairshare.Claim(c.app, n, c.demand, c.weight))
        return out

    # --- workers: reservations, preparation, loss --------------------------------------------

    def _reserved(self, e: Reserved) -> None:
        seen = e.offer or next((o for o in self.offers if o.node == e.worker), None)
        self.ledger.link(Worker(e.worker, e.host, e.slots, seen))
        if not self.acting():
            self._release(e.worker, "app ended")
            return
        self._out.append(Prepare(e.worker))

    def _reserve_failed(self, e: ReserveFailed) -> None:
        self.ledger.answered(e.worker)
        self.ledger.refuse(e.worker, e.now)
        self.waiting.last_refusal = f"{e.worker}: {e.reason}"
        self._rehome_answered(e.worker)
        if e.term:
            self._step_down(e.term)

    def _prepared(self, e: Prepared) -> None:
        w = self.ledger.workers.get(e.worker)
        self._rehome_answered(e.worker)
        if w is None:
            return
        if e.error:
            self._note(f"could not prepare {w.host}: {e.error}", warning=True)
            self.ledger.refuse(e.worker, e.now)
            self._release(e.worker, f"preparation failed: {e.error}")
            return
        if not self.acting():
            self._release(e.worker, "app ended")
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
            if self._record(je.Abandoned(a.task, a.attempt, f"worker {node} lost", False)):
                lost.append(f"{a.task}#{a.attempt}")
            self.ledger.settle(key)
        self._note(f"lost worker {node} ({reason}); requeued {', '.join(lost) or 'nothing'}")
        self.ledger.refuse(node, self._now)

    def _launch_failed(self, e: LaunchFailed) -> None:
        self._note(f"launch of {e.task}#{e.attempt} failed: {e.error}", warning=True)
        rec = self.table.record(e.task)
        if not rec.worker and self.table.accepts(e.task, e.attempt, None):
            # No link loss will requeue it: do it here (bounded by the task's max losses).
            self._record(je.Abandoned(e.task, e.attempt, f"launch failed: {e.error}", False))
        # With a worker, the shell closes its link: the loss requeues the attempt.

    # --- what workers send ----------------------------------------------------------------

    def _from_worker(self, worker: str, msg: object) -> None:
        if isinstance(msg, (TaskResult, GiveBack)):
            why = self._not_placed_there(worker, msg.task, msg.attempt)
            if why is not None:
                self._note(f"refused a {type(msg).__name__} from {worker}: {why}", warning=True)
                self._out.append(CloseLink(worker, why))
                return
        if isinstance(msg, TaskResult):
            self._result(worker, msg, via_backend=False)
        elif isinstance(msg, GiveBack):
            self._give_back(worker, msg)
        elif isinstance(msg, HeartbeatAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            self._reconcile(worker, msg)
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
            self._record(je.Abandoned(msg.task, msg.attempt, f"given back: {msg.reason}", False))
        if key not in self.ledger.in_flight:
            self.ledger.settle(key)
        if worker in self.ledger.workers and not self.table.running_on(worker):
            self.ledger.refuse(worker, self._now)
            self._release(worker, "its owner needs the machine")

    # --- the one commit path (workers' and middleware's results) ------------------------------

    def _result(self, worker: str, r: TaskResult, *, via_backend: bool) -> None:
        key = (r.task, r.attempt)
        if r.app != self.app or r.task not in self.spec.task_ids:
            self._note(f"dropped a result for {r.app}/{r.task}", warning=True)
            return
        if not self.acting() or key in self._commits:
            if via_backend and not self.acting():
                self._out.append(NotCommitted(r.task, r.attempt, "not coordinated here"))
            return  # not ours to commit any more (the worker keeps it), or already under way
        host = self.worker_hosts.get(worker, "")
        if worker in self.ledger.workers:
            host = host or self.ledger.workers[worker].host
            self.ledger.workers[worker].full = is_refusal(r)
            self._adopt_unknown(worker, r.task, r.attempt)
        if r.attempt > self.table.record(r.task).attempts:
            # An attempt this journal never had (not a duplicate): no ack, the worker keeps
            # it and sends it again, adopted once its worker is linked here.
            self._note(f"{r.task}#{r.attempt} is unknown here; not acknowledged")
            return
        c = _Commit(worker, host, r, via_backend)
        self._commits[key] = c
        self.ledger.in_flight.add(key)
        if hashlib.sha256(r.outputs).hexdigest() != r.outputs_sha256:
            seq = 0
            if self.table.accepts(r.task, r.attempt, None):
                why = "outputs corrupted in transit"
                seq = self._record(je.Abandoned(r.task, r.attempt, why, True))
            c.seq = seq or self.seq
        elif not self.table.accepts(r.task, r.attempt, self._exit(r)):
            c.seq = self.seq  # a duplicate: acknowledged once the journal is durable
        elif self._exit(r) is None and not r.outputs:  # nothing to stage
            if is_refusal(r):  # never ran (no free slot there): requeued, not a failure
                entry = je.Abandoned(r.task, r.attempt, f"{host}: {r.error}", False)
            else:
                why = r.error or "no exit status"
                entry = je.Abandoned(r.task, r.attempt, why, True, r.seconds)
            c.seq = self._record(entry) or self.seq
        else:
            self._out.append(StageOutputs(r))

    @staticmethod
    def _exit(r: TaskResult) -> int | None:
        done = r.exit_code is not None and (r.exit_code != 0 or not r.error)
        return r.exit_code if done else None

    def _staged(self, e: OutputsStaged) -> None:
        key = (e.task, e.attempt)
        c = self._commits.get(key)
        if c is None or c.seq >= 0:
            return
        r = c.result
        code = self._exit(r)
        if e.error:
            self._out.append(Discard(e.task, e.attempt))
            why = f"unreadable outputs: {e.error}"
            c.seq = self._record(je.Abandoned(r.task, r.attempt, why, True)) or self.seq
            return
        if not self.acting() or not self.table.accepts(r.task, r.attempt, code):
            self._out.append(Discard(e.task, e.attempt))  # settled while the files unpacked
            c.seq = self.seq
            return
        entry: je.Entry
        if code is not None:
            named = c.worker if c.via_backend else ""
            entry = je.Finished(
                r.task, r.attempt, code, r.seconds, 0.0, self.term, named, c.host if named else ""
            )
            if named:
                self.worker_hosts[named] = c.host
        else:  # timed out, killed, or exit 0 without its declared outputs
            entry = je.Abandoned(r.task, r.attempt, r.error or "no exit status", True, r.seconds)
        c.seq = self._record(entry, host=c.host, outputs=r.outputs, promote=True) or self.seq

    def _flush_commits(self) -> None:
        """Acknowledge what ``W`` durable copies hold; drop every wait once not acting."""
        for key, c in list(self._commits.items()):
            if c.seq < 0 and self.acting():
                continue
            if not self.acting():
                if c.seq < 0:
                    self._out.append(Discard(key[0], key[1]))  # staged, never to be promoted
                if c.via_backend:
                    self._out.append(NotCommitted(key[0], key[1], "not coordinated here any more"))
            elif self.replicas.durable(c.seq):
                self._out.append(Ack(c.worker, key[0], key[1], self.term, c.via_backend))
            else:
                continue
            del self._commits[key]
            self.ledger.settle(key)

    # --- takeover and step-down -----------------------------------------------------------

    def _takeover_step(self, now: float) -> None:
        t = self._takeover
        if t is None:
            self._takeover = t = _Takeover()
            running = self.table.running()
            if self.placement.adopts_on_takeover:
                self.ledger.unconfirmed = {(a.task, a.attempt): a.worker for a in running}
            else:
                for a in running:
                    why = "its CE head moved to the new coordinator"
                    self._record(je.Abandoned(a.task, a.attempt, why, False))
            mine = {a.worker for a in running}
            for o in self.offers:
                if o.node in mine or (o.state == "worker" and o.app == self.app):
                    t.answers.add(o.node)
                    t.rehomed.add(o.node)
                    self.ledger.asking(o.node)
                    self._out.append(Recruit(o, self.term, rehome=True))
            self._note(f"re-homing {len(t.answers)} workers, {len(running)} attempts")
        if t.answers:
            return
        if t.deadline is None:
            t.deadline = now + self.timing.rehome_grace
        if self.ledger.unconfirmed and now < t.deadline:
            return
        for (task, attempt), node in list(self.ledger.unconfirmed.items()):
            if (task, attempt) in self.ledger.in_flight:
                continue
            self._record(je.Abandoned(task, attempt, f"worker {node} lost in the takeover", False))
        self.ledger.unconfirmed.clear()
        self.role.handle(cr.TakeoverDone())
        self._save_role()

    def _rehome_answered(self, node: str) -> None:
        if self._takeover is not None:
            self._takeover.answers.discard(node)

    def _adopt_unknown(self, worker: str, task: str, attempt: int) -> bool:
        """A re-homed worker runs (or finished) the *next* attempt of a ready task: its
        ``Started`` entry was lost with the old coordinator (entries stream after they are
        journaled). The worker's word is the only record of that attempt: journal it, so the
        number is never handed out twice and the result is not dropped as a duplicate."""
        if task not in self.spec.task_ids or not self.acting():
            return False
        if self._takeover is None or worker not in self._takeover.rehomed:
            return False  # only a worker of the old coordinator, re-homed here, is believed
        rec = self.table.record(task)
        if rec.state is not TaskState.READY or attempt != rec.attempts + 1:
            return False
        host = self.ledger.workers[worker].host
        self._record(je.Started(task, attempt, worker, host, 0.0), host=host)
        self.ledger.start((task, attempt), worker, self.spec.task(task).requirements.cpus)
        self._note(f"adopted {task}#{attempt} from {worker}: its start was not in the journal")
        return True

    def _reconcile(self, worker: str, ack: HeartbeatAck) -> None:
        """Adopt the unconfirmed attempts ``worker`` runs; abandon those it does not."""
        if worker in self.ledger.workers and ack.term == self.term:
            for item in ack.running:
                task, _, n = item.rpartition("#")
                if n.isdigit():
                    self._adopt_unknown(worker, task, int(n))
        running = set(ack.running)
        for key, node in list(self.ledger.unconfirmed.items()):
            if node != worker:
                continue
            task, attempt = key
            if f"{task}#{attempt}" in running:
                self.ledger.confirm(key, worker, self.spec.task(task).requirements.cpus)
                continue
            self.ledger.unconfirmed.pop(key, None)
            if key not in self.ledger.in_flight and self.table.accepts(task, attempt, None):
                why = f"worker {worker} no longer runs it"
                self._record(je.Abandoned(task, attempt, why, False))

    def _step_down(self, term: int) -> None:
        """A higher term coordinates the app: stop acting (no acknowledgement from now on)."""
        if self.role.ended or term <= self.term:
            return
        self.role.handle(cr.TermSeen(term))
        if self.role.role is Role.STEPPED_DOWN:
            self._note(f"term {term} coordinates it elsewhere; stepping down", warning=True)
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
            self._note("a replica did not confirm the journal's end", warning=True)
        outcome = self.role.role.value
        for n in sorted(self.replicas.fed):
            self._out += self.replicas.drop(n)
        self.replicas.closed = True
        for n in sorted(self.ledger.workers):
            self._release(n, f"app {outcome}", outcome)
        self.outcome = outcome
        self._out.append(Ended(outcome))
