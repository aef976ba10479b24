"""One application's coordinator: recruit volunteers, run the tasks, collect, release —
and, as a replica, keep the journal and take over when the coordinator is lost.

It lives in the host's daemon (not in ``bjgrid submit``), so closing the terminal does not
kill the app. Loop: recruit idle volunteers that fit (reserve with a lease), let the backend
prepare each, place ready tasks on free slots, commit each result exactly once (by task and
attempt), requeue the tasks of lost workers, release workers as soon as nothing is left that
they could run, and at the end say "app finished"/"app cancelled" before releasing everyone
and withdrawing the coordinator record.

Every change of the task table is a journal entry (faulttolerance/entries.py): committed to
the daemon's SQLite journal, fed to the replicas (coordinator/replication.py), then applied.
A result is acknowledged to its worker only once a write quorum of the replica set holds it
(faulttolerance/quorum.py), so it is never lost;
a worker keeps an unacknowledged result and sends it again to whoever coordinates next.

Roles (states/coordinator.py): RECRUITING/RUNNING while coordinating; STANDBY on a replica;
TAKING_OVER after an election (or a restart): term + 1, re-home the old workers (reserve them
again with the higher term; they send what they hold and say what they run), requeue what
nobody holds after ``rehome_grace``, then RUNNING. Whoever sees a higher term for the app
over the control channel steps down (STEPPED_DOWN) and stops acting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import CoordinatorBackend
from bonjourgrid.ce_backends.registry import CoordinatorContext, make_coordinator
from bonjourgrid.config import Config
from bonjourgrid.control.channel import connect
from bonjourgrid.control.messages import (
    AppEnded,
    AppQuery,
    AppState,
    Fenced,
    GiveBack,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Release,
    ReplicaOpen,
    Replicas,
    Reserve,
    ReserveReply,
    ResultAck,
    TaskResult,
)
from bonjourgrid.coordinator import fairshare, scheduling
from bonjourgrid.coordinator.matchmaking import Offer, fits, unmet
from bonjourgrid.coordinator.replication import Replication
from bonjourgrid.coordinator.result_store import ResultStore, results_document
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.daemon.local_messages import Progress
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter
from bonjourgrid.gridkey import GridKey
from bonjourgrid.states.coordinator import (
    AllTasksTerminal,
    Cancel,
    CoordinatorLost,
    CoordinatorRole,
    GridFailed,
    Role,
    TakeoverDone,
    TermSeen,
    WorkerStaged,
)
from bonjourgrid.states.taskstate import TERMINAL_STATES
from bonjourgrid.states.tasktable import Attempt, TaskTable

log = logging.getLogger(__name__)

_REFUSAL_BACKOFF = 2.0
"""Seconds before asking again a volunteer that refused us (it serves someone else)."""


@dataclass(frozen=True)
class Identity:
    """Who coordinates: this daemon's node and host, with the grid key."""

    node: str
    host: str
    key: GridKey


@dataclass(frozen=True)
class Peer:
    """Another daemon that may hold this app (from mDNS): where to ask it."""

    node: str
    addresses: tuple[str, ...]
    port: int
    term: int


class AppCoordinator:
    def __init__(
        self,
        *,
        app_id: str,
        spec: AppSpec,
        bundle: bytes,
        digest: str,
        user: str,
        me: Identity,
        config: Config,
        offers: Callable[[], list[Offer]],
        store_root: Path,
        journal: Journal,
        role: CoordinatorRole | None = None,
        entries: Sequence[str] = (),
        hosts: dict[str, str] | None = None,
        coordinator: tuple[str, str] | None = None,
        replicas: Sequence[str] = (),
        rivals: Callable[[], list[Peer]] = lambda: [],
        claims: Callable[[], list[fairshare.Claim]] = lambda: [],
        on_change: Callable[[AppCoordinator], None] = lambda c: None,
        address: Callable[[], str] = lambda: "127.0.0.1",
        signature: str = "",
        signer: str = "",
    ) -> None:
        self.app_id = app_id
        self.signature = signature
        """The submitting user's signature of the app (``AppSignature.encode()``), sent in
        every Reserve so volunteers with ``trusted_users`` can check it; "" unsigned."""
        self.signer = signer
        self._last_refusal = ""
        """The latest volunteer's refusal (host: reason), told when the app fails for want
        of volunteers."""
        self.spec = spec
        self.bundle = bundle
        self.bundle_sha = sha256_hex(bundle)
        self.digest = digest
        self.user = user
        self.me = me
        self.config = config
        self._offers = offers
        self._rivals = rivals
        self._claims = claims
        """Other apps' fair-share claims, from their ``_bjg-coord`` records (fairshare.py)."""
        self._hungry_since: dict[str, float] = {}
        """Rival app -> since when no volunteer serves it (a record a dead coordinator left)."""
        self._waiting = ""
        """Why ready tasks wait: the requirement no volunteer meets ("" when none)."""
        self.role = role or CoordinatorRole(app_id)
        self.table = TaskTable(spec.tasks)
        self.worker_hosts: dict[str, str] = dict(hosts or {})
        """Node id -> host name of every worker that ran something."""
        self.backend_name = spec.backend
        self._backend_saved: dict[str, str] = {}
        self._address = address
        for text in entries:
            self._replay(je.decode(text))
        self.seq = len(entries)
        self.journal = journal
        self.store = ResultStore(store_root)
        self.backend: CoordinatorBackend = self._make_backend()
        self.links: dict[str, WorkerLink] = {}
        self.coordinator = coordinator or (me.node, me.host)
        """(node, host) of whoever coordinates the app (this daemon unless a replica)."""
        row = journal.app(app_id)
        self.members = Members(
            row.members_version if row else 0, tuple(replicas), row.members_old if row else None
        )
        """The replica set as the coordinator last told this replica (faulttolerance/quorum)."""
        self.replica_ranks: tuple[str, ...] = self.members.everyone()
        """Election ranks as the coordinator last told this replica (best first)."""
        self.voter = Voter(
            self.role.term,
            (row.leader if row else "") or self.coordinator[0],
            row.voted if row else 0,
        )
        """This daemon's election state for the app (votes granted, the term it follows)."""
        self.journal_term = (row.journal_term if row else 0) or self.role.term
        """The term of the stream this journal came in (a vote compares it first)."""
        self.replication = Replication(
            app_id,
            spec.replicas,
            me.node,
            self._snapshot,
            settling=lambda: self.role.role is Role.TAKING_OVER,
            on_members=self._save_members,
            probe=self._probe_member,
        )
        self._refused: dict[str, float] = {}
        self._recruiting: set[str] = set()
        self._unfit_since: dict[str, float] = {}
        self._running: dict[tuple[str, int], tuple[WorkerLink, int]] = {}
        self._unconfirmed: dict[tuple[str, int], str] = {}
        """After a takeover: attempts the journal says run, not yet confirmed by a worker."""
        self._results_in_flight: set[tuple[str, int]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._watchers: set[asyncio.Queue[Progress]] = set()
        self._on_change = on_change
        self._abandoned = False
        self.ended_at: float | None = None
        self.done = asyncio.Event()

    # --- public ---------------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.role.term

    @property
    def outcome(self) -> str:
        """'' while running; then finished / cancelled / failed / stepped-down."""
        return self.role.role.value if self.role.ended else ""

    @property
    def complete(self) -> bool:
        """The app ended here with its full results (not a coordinator that stepped down)."""
        return self.role.ended and self.role.role is not Role.STEPPED_DOWN

    def progress(self) -> Progress:
        counts = {s.value: n for s, n in self.table.counts().items()}
        return Progress(
            app=self.app_id,
            name=self.spec.name,
            role=self.role.role.value,
            counts=dict(counts),
            workers=len(self.links),
            ended=self.role.ended,
            outcome=self.outcome,
            reason=self.role.reason,
            waiting="" if self.role.ended else self._waiting,
        )

    def state(self) -> AppState:
        return AppState(
            self.app_id, self.term, self.role.role.value, self.role.coordinating, self.complete
        )

    def subscribe(self) -> asyncio.Queue[Progress]:
        q: asyncio.Queue[Progress] = asyncio.Queue()
        q.put_nowait(self.progress())
        self._watchers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Progress]) -> None:
        self._watchers.discard(q)

    def results(self) -> dict[str, object]:
        return results_document(self.app_id, self.spec, self.table, self.worker_hosts)

    async def cancel(self, reason: str = "cancelled by the user") -> None:
        if self.role.ended:
            return
        self.role.handle(Cancel(reason))
        self._record(je.Cancelled(reason))
        self._save_role()
        self._wake.set()

    def take_over(self, term: int = 0) -> None:
        """An elected replica claims the ``term`` it won (a restarted coordinator: the next
        term it has not voted in); ``run`` follows. The replica set is the one this node
        knew: results are committed by its write quorums (faulttolerance/quorum.py)."""
        term = term or max(self.term, self.voter.voted) + 1
        if term - 1 > self.term:
            self.role.handle(TermSeen(term - 1))
        self.role.handle(CoordinatorLost())
        self.voter = Voter(self.term, self.me.node, max(self.term, self.voter.voted))
        self.journal_term = self.term
        self.coordinator = (self.me.node, self.me.host)
        self.replication.adopt(self.members)
        self.journal.update_app(
            self.app_id,
            term=self.term,
            role=self.role.role.value,
            coordinator=self.me.node,
            coordinator_host=self.me.host,
            voted=self.voter.voted,
            leader=self.voter.leader,
            journal_term=self.journal_term,
        )
        log.warning("app %s: taking over as coordinator with term %d", self.app_id, self.term)

    # --- the replica's side of the quorum rules ---------------------------------------------

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

    def _save_members(self, members: Members) -> None:
        self.members = members
        self.replica_ranks = members.everyone()
        self.journal.update_app(
            self.app_id,
            replicas=members.nodes,
            members_version=members.version,
            members_old=members.old,
        )

    async def _probe_member(self, node: str) -> None:
        """A member of the replica set this coordinator does not reach: ask it what it holds.
        A higher term there: another coordinator was elected, step down. Nothing: it
        restarted, and counts for its own removal from the set."""
        offer = next((o for o in self._offers() if o.node == node), None)
        if offer is None:
            return
        peer = Peer(node, offer.addresses, offer.port, 0)
        st = await query_app(peer, self.app_id, self.me, self.config.ping_timeout)
        if st is None or not self._acting():
            return
        if st.term > self.term:
            self._step_down(st.term)
        elif not st.role:
            self.replication.holds_nothing(node)

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

    def abandon(self) -> None:
        """The daemon stops without ending the app: stop acting, keep the journal as it is
        (a replica takes over, or this daemon resumes the app when it starts again)."""
        self._abandoned = True
        self._wake.set()

    def _make_backend(self) -> CoordinatorBackend:
        ctx = CoordinatorContext(
            app=self,
            address=self._address(),
            root=self.store.root / "ce",
            on_result=self._on_backend_result,
            saved=dict(self._backend_saved),
        )
        return make_coordinator(self.backend_name, ctx)

    async def run(self) -> None:
        """Coordinate the app to its end. Never raises for the app's own failures."""
        recruiter: asyncio.Task[None] | None = None
        try:
            self.backend = self._make_backend()  # this machine's address and saved state now
            await self.backend.start()
            saved = self.backend.saved_state()
            if saved and saved != self._backend_saved:
                self._backend_saved = dict(saved)
                self._record(je.BackendState(self.backend_name, dict(saved)))
            recruiter = asyncio.create_task(self._recruit_loop(), name=f"recruit {self.app_id}")
            if self.role.role is Role.TAKING_OVER:
                running = self.table.running()
                if self.backend.places_tasks:
                    # The old head (HTCondor's schedd, BOINC's project) left with the old
                    # coordinator: its queue is gone, so every unfinished attempt runs again here.
                    for a in running:
                        why = "its CE head moved to the new coordinator"
                        self._record(je.Abandoned(a.task, a.attempt, why, False))
                else:
                    self._unconfirmed = {(a.task, a.attempt): a.worker for a in running}
                self._spawn(self._rehome())
            await self._schedule_loop()
        except Exception as e:
            log.exception("app %s: coordinator failed", self.app_id)
            if not self.role.ended:
                self.role.handle(GridFailed(f"coordinator error: {e}"))
                self._record(je.Cancelled(self.role.reason))
        finally:
            if recruiter is not None:
                recruiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recruiter
            await self._end()

    # --- the journal ------------------------------------------------------------------------

    def _record(self, entry: je.Entry, *, outputs: bytes = b"", host: str = "") -> int:
        """Apply ``entry``; if it changed the table, journal it and feed it to the replicas.
        The entry's number, or 0 when it changed nothing."""
        if not je.apply(self.table, entry):
            return 0
        self.seq += 1
        text = je.encode(entry)
        self.journal.append(self.app_id, self.seq, text)
        self.replication.append(
            JournalAppend(self.app_id, self.term, self.seq, text, host, outputs)
        )
        return self.seq

    def _replay(self, entry: je.Entry) -> None:
        je.apply(self.table, entry)
        if isinstance(entry, (je.Started, je.Finished)) and entry.worker:
            self.worker_hosts[entry.worker] = entry.host
        elif isinstance(entry, je.BackendState):
            self._backend_saved = dict(entry.data)

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

    def _save_role(self) -> None:
        ended = time.time() if self.role.ended else None
        self.journal.update_app(
            self.app_id, role=self.role.role.value, reason=self.role.reason, ended=ended
        )

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
        )

    # --- scheduling -----------------------------------------------------------------------

    def _acting(self) -> bool:
        return self.role.coordinating and not self._abandoned

    async def _schedule_loop(self) -> None:
        no_worker_since = last_fit_check = last_rival_check = time.monotonic()
        last: Progress | None = None
        while self._acting():
            if self.table.finished() and not self._unconfirmed:
                self.role.handle(AllTasksTerminal())
                self._save_role()
                break
            self._release_useless()  # first: a worker between tasks may be owed to a rival
            self._place_ready_tasks()
            now = time.monotonic()
            if now - last_fit_check >= self.config.recruit_retry:
                self._give_up_unplaceable()
                last_fit_check = now
            if now - last_rival_check >= self.config.heartbeat_interval:
                await self._check_rivals()
                last_rival_check = now
            self._release_useless()
            self.replication.update([k for k in self.links.values() if k.ready], self.term)
            if self.links:
                no_worker_since = now
            elif now - no_worker_since > self.config.recruit_timeout:
                reason = f"no suitable volunteer answered within {self.config.recruit_timeout:g} s"
                if self._waiting:
                    reason = f"no volunteer meets the app's requirements: {self._waiting}"
                elif self._last_refusal:
                    reason += f" (last refusal: {self._last_refusal})"
                self.role.handle(GridFailed(reason))
                self._record(je.Cancelled(reason))
                self._save_role()
                break
            p = self.progress()
            if p != last:
                self._publish(p)
                last = p
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.recruit_retry)

    def _place_ready_tasks(self) -> None:
        if self.backend.places_tasks:
            self._hand_ready_tasks_to_backend()
            return
        if not any(k.ready and k.free > 0 for k in self.links.values()):
            return
        ready = [self.spec.task(t) for t in self.table.ready()]
        slots = [
            scheduling.WorkerSlots(k.node, k.free, k.offer, k.ready) for k in self.links.values()
        ]
        for task_id, node in scheduling.place(ready, slots, self.backend_name):
            link = self.links[node]
            task = self.spec.task(task_id)
            attempt = Attempt(task_id, self.table.record(task_id).attempts + 1, node)
            self.worker_hosts[node] = link.host
            self._record(
                je.Started(task_id, attempt.attempt, node, link.host, time.monotonic()),
                host=link.host,
            )
            link.used += task.requirements.cpus
            self._running[(task_id, attempt.attempt)] = (link, task.requirements.cpus)
            self._spawn(self._launch(task_id, attempt, link))

    def _hand_ready_tasks_to_backend(self) -> None:
        """A backend whose middleware places tasks (HTCondor, BOINC) gets every ready task at
        once, with no worker: its own scheduler matches them to the recruited machines."""
        for task_id in self.table.ready():
            attempt = Attempt(task_id, self.table.record(task_id).attempts + 1, "")
            self._record(je.Started(task_id, attempt.attempt, "", "", time.monotonic()))
            self._spawn(self._launch(task_id, attempt, None))

    async def _launch(self, task_id: str, attempt: Attempt, link: WorkerLink | None) -> None:
        task = self.spec.task(task_id)
        inputs = await asyncio.to_thread(self.store.inputs_for, task, self.spec)
        try:
            await self.backend.launch(task, attempt, link, inputs)
        except Exception as e:
            where = link.host if link is not None else f"the {self.backend_name} CE"
            log.warning("app %s: launch of %s on %s failed: %s", self.app_id, task_id, where, e)
            if link is None and self.table.accepts(task_id, attempt.attempt, None):
                # No link loss will requeue it: do it here (bounded by the task's max losses).
                self._record(je.Abandoned(task_id, attempt.attempt, f"launch failed: {e}", False))
                self._wake.set()
            # With a link, the link is gone: its loss handler requeues the attempt.

    def _give_up_unplaceable(self) -> None:
        """Fail READY tasks that no worker and no idle volunteer has fitted for a while;
        meanwhile say (``_waiting``, in the progress) which requirement no volunteer meets."""
        now = time.monotonic()
        offers = [link.offer for link in self.links.values() if link.offer is not None]
        seen = {o.node: o for o in self._offers()}
        offers += [o for o in seen.values() if o.state == "idle"]
        seen.update({o.node: o for o in offers})
        unmatched: list[tuple[str, str]] = []
        for task_id in self.table.ready():
            req = self.spec.task(task_id).requirements
            if any(fits(o, req, self.backend_name) for o in offers):
                self._unfit_since.pop(task_id, None)
                continue
            why = unmet(list(seen.values()), req, self.backend_name)
            if why is not None:
                unmatched.append((task_id, why))
            since = self._unfit_since.setdefault(task_id, now)
            if self.links and now - since > self.config.recruit_timeout:
                wants = ", ".join(f"{k}={v}" for k, v in req.to_json().items() if v)
                reason = f"no volunteer satisfies its requirements ({wants})"
                if why is not None:
                    reason += f": {why}"
                log.warning("app %s: task %s: %s", self.app_id, task_id, reason)
                self._record(je.GaveUp(task_id, reason))
        waiting = ""
        if unmatched:
            task_id, why = unmatched[0]
            more = f" and {len(unmatched) - 1} more" if len(unmatched) > 1 else ""
            waiting = f"{why}, for task {task_id}{more}"
        if waiting != self._waiting:
            if waiting:
                log.info("app %s: waiting: %s", self.app_id, waiting)
            self._waiting = waiting

    def _wanted_workers(self, *, fair: bool = True) -> int:
        """More volunteers to ask for now; with ``fair``, no further than this app's fair
        share while rivals want machines too (fairshare.recruit_cap)."""
        limit = self.spec.workers if self.spec.workers is not None else len(self.spec.tasks)
        if fair and (rivals := self._rival_claims()):
            limit = min(limit, fairshare.recruit_cap(self.claim(), rivals, self._machines()[0]))
        unplaced = len(self.table.ready())
        if self.backend.places_tasks:  # queued in the middleware: not covered by a slot yet
            slots = sum(k.slots for k in self.links.values())
            unplaced = max(0, unplaced + len(self.table.running()) - slots)
        return scheduling.wanted_workers(
            unplaced=unplaced,
            recruiting=len(self._recruiting),
            linked=len(self.links),
            limit=limit,
        )

    def _release_useless(self) -> None:
        if self.backend.places_tasks:
            return  # the middleware knows which machine is idle, we do not: keep all to the end
        idle = [k.node for k in self.links.values() if k.ready and k.used == 0]
        ready = len(self.table.ready())
        for node in scheduling.releasable(
            ready_tasks=ready, idle_workers=idle, replicas=self.replication.ranks
        ):
            if node in self._unconfirmed.values():
                continue
            link = self.links.pop(node)
            self._spawn(self._release(link, "no task left for this worker"))
        self._release_above_share()

    # --- fair share between rival coordinators (coordinator/fairshare.py) -----------------

    def claim(self) -> fairshare.Claim:
        """This app's claim, as published in its coordinator record (TXT ``w``/``d``/``wt``):
        workers held, more it could use now (at most the machines seen), its weight."""
        more = self._wanted_workers(fair=False) + len(self._recruiting)
        return fairshare.Claim(
            self.app_id, len(self.links), min(more, self._machines()[0]), self.spec.weight
        )

    def _machines(self) -> tuple[int, int]:
        """Volunteers seen (idle or serving someone), and how many of them are idle."""
        states = [o.state for o in self._offers()]
        return sum(s in ("idle", "worker") for s in states), states.count("idle")

    def _rival_claims(self) -> list[fairshare.Claim]:
        """The other apps' claims, each with the workers the volunteers themselves say serve
        it (their TXT is current, a coordinator's ``w`` lags). A rival that no volunteer has
        served for twice ``recruit_timeout`` is a record left by a dead coordinator (a live
        one fails its app by then): ignored."""
        now = time.monotonic()
        held: dict[str, int] = {}
        for o in self._offers():
            if o.state == "worker" and o.app is not None:
                held[o.app] = held.get(o.app, 0) + 1
        out: list[fairshare.Claim] = []
        for c in self._claims():
            if c.app == self.app_id:
                continue
            n = held.get(c.app, 0)
            if n:
                self._hungry_since.pop(c.app, None)
            elif now - self._hungry_since.setdefault(c.app, now) > 2 * self.config.recruit_timeout:
                continue
            out.append(fairshare.Claim(c.app, n, c.demand, c.weight))
        return out

    def _release_above_share(self) -> None:
        """Let idle workers go (between tasks, never a running one) while this app holds more
        than its fair share and a rival below its own share wants more."""
        rivals = self._rival_claims()
        if not rivals:
            return
        machines, idle_machines = self._machines()
        count = fairshare.release_count(self.claim(), rivals, machines, idle_machines)
        if count <= 0:
            return
        idle = [k.node for k in self.links.values() if k.ready and k.used == 0]
        keep = set(self.replication.ranks) | set(self._unconfirmed.values())
        for node in fairshare.choose_release(idle, count, keep):
            link = self.links.pop(node)
            self._refused[node] = time.monotonic()  # do not ask it back at once
            self._spawn(self._release(link, "fair share: a rival coordinator needs machines"))

    async def _release(self, link: WorkerLink, reason: str, outcome: str | None = None) -> None:
        if self.links.get(link.node) is link:
            del self.links[link.node]
        self.replication.drop(link.node)
        with contextlib.suppress(Exception):
            if outcome:
                await link.send(AppEnded(self.app_id, self.term, outcome))
            await link.send(Release(self.app_id, self.term, reason))
            # Let the worker close first: closing with its acks unread would reset the
            # connection, and a reset can drop our last messages before the worker reads them.
            await asyncio.wait_for(link.peer_closed.wait(), self.config.connect_timeout)
        await link.close()
        log.info("app %s: released %s (%s)", self.app_id, link.host, reason)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    # --- recruitment ----------------------------------------------------------------------

    async def _recruit_loop(self) -> None:
        while self._acting():
            wanted = self._wanted_workers()
            if wanted > 0:
                now = time.monotonic()
                busy = set(self.links) | self._recruiting
                busy |= {n for n, t in self._refused.items() if now - t < _REFUSAL_BACKOFF}
                needs = [
                    self.spec.task(r.id).requirements
                    for r in self.table.records()
                    if r.state not in TERMINAL_STATES
                ]
                batch = scheduling.to_ask(
                    self.app_id,
                    self._offers(),
                    needs,
                    self.backend_name,
                    exclude=busy,
                    wanted=wanted,
                )
                if batch:
                    await asyncio.gather(*(self._recruit(o) for o in batch))
                    continue
            await asyncio.sleep(self.config.recruit_retry)

    async def _recruit(self, offer: Offer) -> None:
        self._recruiting.add(offer.node)
        try:
            link = await self._reserve(offer)
            if link is None:
                self._refused[offer.node] = time.monotonic()
                return
            try:
                await self.backend.prepare(link)
            except Exception as e:
                log.warning("app %s: could not prepare %s: %s", self.app_id, offer.host, e)
                await self._release(link, f"preparation failed: {e}")
                self._refused[offer.node] = time.monotonic()
                return
            if not self._acting():
                await self._release(link, "app ended")
                return
            link.ready = True
            if self.role.role is not Role.TAKING_OVER:
                self.role.handle(WorkerStaged())
            self._wake.set()
        finally:
            self._recruiting.discard(offer.node)

    async def _reserve(self, offer: Offer) -> WorkerLink | None:
        cfg = self.config
        for address in offer.addresses:
            try:
                ch = await connect(
                    address,
                    offer.port,
                    key=self.me.key,
                    node_id=self.me.node,
                    timeout=cfg.connect_timeout,
                )
            except Exception as e:
                log.debug("app %s: cannot reach %s at %s: %s", self.app_id, offer.host, address, e)
                continue
            try:
                ask = Reserve(
                    self.app_id,
                    self.me.node,
                    self.me.host,
                    self.term,
                    cfg.reserve_lease,
                    self.backend_name,
                    user=self.signer,
                    signature=self.signature,
                    bundle_sha256=self.bundle_sha,
                    spec=self.spec.to_json(),
                )
                reply = await ch.request(ask, timeout=cfg.connect_timeout)
            except Exception as e:
                log.debug("app %s: reservation of %s failed: %s", self.app_id, offer.host, e)
                await ch.close()
                return None
            if isinstance(reply, Fenced):
                await ch.close()
                self._step_down(reply.term)
                return None
            if not isinstance(reply, ReserveReply) or not reply.accepted:
                why = reply.reason if isinstance(reply, ReserveReply) else type(reply).__name__
                log.info("app %s: %s refused: %s", self.app_id, offer.host, why)
                self._last_refusal = f"{offer.host}: {why}"
                await ch.close()
                return None
            if not self._acting():
                await ch.send(Release(self.app_id, self.term, "app ended"))
                await ch.close()
                return None
            link = WorkerLink(
                ch,
                node=offer.node,
                host=offer.host,
                slots=reply.slots,
                app=self.app_id,
                term=self.term,
                config=cfg,
                on_message=self._on_message,
                on_lost=self._on_lost,
            )
            link.offer = offer
            old = self.links.get(offer.node)
            self.links[offer.node] = link
            if old is not None:
                await old.close()
            link.start()
            log.info("app %s: reserved %s (%d slots)", self.app_id, offer.host, reply.slots)
            return link
        return None

    # --- taking over ------------------------------------------------------------------------

    async def _rehome(self) -> None:
        """Reserve the app's old workers again with our (higher) term; reconcile their attempts.

        A re-homed worker first sends the results it holds, then acknowledges our heartbeat
        with what it runs (HeartbeatAck.running); ``_reconcile`` uses that. Attempts that no
        worker claims within ``rehome_grace`` are requeued as lost.
        """
        running = self.table.running()
        mine = {a.worker for a in running}
        offers = [
            o
            for o in self._offers()
            if o.node in mine or (o.state == "worker" and self._serves_us(o))
        ]
        log.info(
            "app %s: re-homing %d workers, %d attempts to reconcile",
            self.app_id,
            len(offers),
            len(running),
        )
        await asyncio.gather(*(self._recruit(o) for o in offers))
        deadline = time.monotonic() + self.config.rehome_grace
        while self._unconfirmed and time.monotonic() < deadline and self._acting():
            await asyncio.sleep(0.05)
        for (task, attempt), node in list(self._unconfirmed.items()):
            if (task, attempt) in self._results_in_flight:
                continue
            self._unconfirmed.pop((task, attempt), None)
            self._record(je.Abandoned(task, attempt, f"worker {node} lost in the takeover", False))
        self._unconfirmed.clear()
        if self.role.role is Role.TAKING_OVER:
            self.role.handle(TakeoverDone())
            self._save_role()
        self._wake.set()

    def _serves_us(self, offer: Offer) -> bool:
        """A worker advertising this app (its TXT names the app it serves)."""
        return offer.app == self.app_id

    def _reconcile(self, link: WorkerLink, ack: HeartbeatAck) -> None:
        if not self._unconfirmed:
            return
        running = set(ack.running)
        for key, node in list(self._unconfirmed.items()):
            if node != link.node:
                continue
            task, attempt = key
            del self._unconfirmed[key]
            if f"{task}#{attempt}" in running:
                cpus = self.spec.task(task).requirements.cpus
                link.used += cpus
                self._running[key] = (link, cpus)
            elif key not in self._results_in_flight and self.table.accepts(task, attempt, None):
                self._record(
                    je.Abandoned(task, attempt, f"worker {link.host} no longer runs it", False)
                )
        self._wake.set()

    async def _check_rivals(self) -> None:
        """A coordinator record for this app from another node with a higher term (mDNS,
        informative): ask that node over the control channel; if it coordinates with a
        higher term, step down."""
        for peer in self._rivals():
            if peer.node == self.me.node or peer.term <= self.term:
                continue
            state = await query_app(peer, self.app_id, self.me, self.config.ping_timeout)
            if state is not None and state.coordinating and state.term > self.term:
                self._step_down(state.term)
                return

    def _step_down(self, term: int) -> None:
        if self.role.ended:
            return
        self.role.handle(TermSeen(term))
        if self.role.role is Role.STEPPED_DOWN:
            log.warning(
                "app %s: term %d coordinates it elsewhere; stepping down", self.app_id, term
            )
            self.journal.update_app(
                self.app_id, term=term, role=self.role.role.value, ended=time.time()
            )
            self._wake.set()

    # --- events from workers -----------------------------------------------------------------

    async def _on_message(self, link: WorkerLink, msg: object) -> None:
        if isinstance(msg, TaskResult):
            key = (msg.task, msg.attempt)
            self._results_in_flight.add(key)
            # Not awaited here: waiting for a replica's ack must not block this link's reader
            # (the replica may be this very worker).
            self._spawn(self._on_result(link, msg))
        elif isinstance(msg, GiveBack):
            self._on_give_back(link, msg)
        elif isinstance(msg, HeartbeatAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            self._reconcile(link, msg)
        elif isinstance(msg, Fenced):
            self._step_down(msg.term)
        elif isinstance(msg, JournalAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            elif msg.term < self.term:
                pass  # an answer to an older term's stream
            elif msg.ok:
                self.replication.acked(link.node, msg.seq, msg.members)
            else:
                self.replication.resync(link.node)

    async def _on_result(self, link: WorkerLink, r: TaskResult) -> None:
        key = (r.task, r.attempt)
        held = self._running.get(key)
        try:
            if r.app != self.app_id or r.task not in self.spec.task_ids:
                log.warning("app %s: dropped a result for %s/%s", self.app_id, r.app, r.task)
                return
            if not self._acting():
                return  # not ours to commit any more; the worker keeps it for the next one
            # Shielded: releasing or losing the link must not cancel a commit half done.
            seq = await asyncio.shield(self._verified_commit(r, link.host))
            # Acknowledged only once a write quorum of the replica set holds it (a duplicate:
            # once the journal is, as it may come from an earlier term's journal). Cut off
            # from the set, or stepped down: no acknowledgement, the worker keeps it.
            if not await self.replication.durable(seq or self.seq, self._acting):
                return
            with contextlib.suppress(Exception):
                await link.send(ResultAck(self.app_id, r.task, r.attempt, self.term))
            if seq:
                self._wake.set()
        finally:
            self._results_in_flight.discard(key)
            self._unconfirmed.pop(key, None)
            # The slot counts as busy until the result is committed, so the worker is not
            # released (and its reader cancelled) while the commit is under way.
            if held is not None and self._running.pop(key, None) is not None:
                held[0].used -= held[1]
                self._wake.set()

    async def _on_backend_result(self, r: TaskResult, node: str | None) -> None:
        """A finished attempt from a backend whose middleware ran it (HTCondor, BOINC).
        Returns once it is committed (and durable on the replicas); raises if it was not, so
        the backend keeps it and delivers it again."""
        if r.app != self.app_id or r.task not in self.spec.task_ids:
            log.warning("app %s: dropped a backend result for %s/%s", self.app_id, r.app, r.task)
            return
        if not self._acting():
            raise RuntimeError(f"app {self.app_id} is not coordinated here any more")
        key = (r.task, r.attempt)
        self._results_in_flight.add(key)
        try:
            host = self.worker_hosts.get(node or "", "")
            if node and not host and node in self.links:
                host = self.links[node].host
            seq = await asyncio.shield(self._verified_commit(r, host, node or ""))
            # A duplicate (seq 0) is acknowledged once what the journal holds is durable.
            if not await self.replication.durable(seq or self.seq, self._acting):
                raise RuntimeError(f"{r.task}#{r.attempt} is not durable on the replicas")
            self._wake.set()
        finally:
            self._results_in_flight.discard(key)

    async def _verified_commit(self, r: TaskResult, host: str, worker: str = "") -> int:
        if sha256_hex(r.outputs) != r.outputs_sha256:
            if not self.table.accepts(r.task, r.attempt, None):
                return 0
            return self._record(
                je.Abandoned(r.task, r.attempt, "outputs corrupted in transit", True)
            )
        return await self._commit(r, host, worker)

    async def _commit(self, r: TaskResult, host: str, worker: str = "") -> int:
        """Record an attempt exactly once; its files are in place before the journal says so."""
        done = r.exit_code is not None and (r.exit_code != 0 or not r.error)
        if not self.table.accepts(r.task, r.attempt, r.exit_code if done else None):
            return 0
        try:
            await asyncio.to_thread(self.store.stage, r.task, r.attempt, r.outputs)
        except Exception as e:
            log.warning(
                "app %s: unreadable outputs from %s#%d: %s", self.app_id, r.task, r.attempt, e
            )
            self.store.discard(r.task, r.attempt)
            return self._record(je.Abandoned(r.task, r.attempt, f"unreadable outputs: {e}", True))
        if not self.table.accepts(r.task, r.attempt, r.exit_code if done else None):
            self.store.discard(r.task, r.attempt)  # settled while the files were unpacked
            return 0
        self.store.promote(r.task, r.attempt)
        entry: je.Entry
        if done:
            assert r.exit_code is not None
            entry = je.Finished(
                r.task,
                r.attempt,
                r.exit_code,
                r.seconds,
                time.monotonic(),
                self.term,
                worker=worker,
                host=host if worker else "",
            )
            if worker:
                self.worker_hosts[worker] = host
        else:  # timed out, killed, or exit 0 without its declared outputs
            entry = je.Abandoned(r.task, r.attempt, r.error or "no exit status", True, r.seconds)
        return self._record(entry, outputs=r.outputs, host=host)

    def _on_give_back(self, link: WorkerLink, msg: GiveBack) -> None:
        """The worker's owner needs the machine: requeue the attempt without counting it
        against the task's retries, free its slot, and let the worker go once it runs
        nothing more of ours."""
        key = (msg.task, msg.attempt)
        if msg.task in self.spec.task_ids and key not in self._results_in_flight:
            why = f"given back by {link.host}: {msg.reason}"
            self._record(je.Abandoned(msg.task, msg.attempt, why, False))
        held = self._running.pop(key, None)
        if held is not None:
            held[0].used -= held[1]
        self._unconfirmed.pop(key, None)
        log.info("app %s: %s gave back %s#%d", self.app_id, link.host, msg.task, msg.attempt)
        if self.links.get(link.node) is link and not self.table.running_on(link.node):
            del self.links[link.node]
            self._refused[link.node] = time.monotonic()
            self._spawn(self._release(link, "its owner needs the machine"))
        self._wake.set()

    async def _on_lost(self, link: WorkerLink, reason: str) -> None:
        if self.links.get(link.node) is not link:
            return  # released on purpose, or replaced by a newer link
        del self.links[link.node]
        self.replication.drop(link.node)
        self.backend.worker_lost(link.node)
        lost: list[Attempt] = []
        for a in self.table.running_on(link.node):
            key = (a.task, a.attempt)
            if key in self._results_in_flight:
                continue  # its result arrived; the commit decides
            if self._record(je.Abandoned(a.task, a.attempt, f"worker {link.node} lost", False)):
                lost.append(a)
            self._running.pop(key, None)
            self._unconfirmed.pop(key, None)
        log.warning(
            "app %s: lost worker %s (%s); requeued %s",
            self.app_id,
            link.host,
            reason,
            ", ".join(f"{a.task}#{a.attempt}" for a in lost) or "nothing",
        )
        self._refused[link.node] = time.monotonic()
        self._wake.set()

    # --- the end ----------------------------------------------------------------------------

    async def _end(self) -> None:
        for t in list(self._background):
            if not t.done():
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(t), 5.0)
        if self.role.ended and self.role.role is not Role.STEPPED_DOWN:
            await self.replication.settle(self.seq, self.config.connect_timeout)
            self.replication.close()
            outcome = self.role.role.value
            await asyncio.gather(
                *(
                    self._release(link, f"app {outcome}", outcome=outcome)
                    for link in list(self.links.values())
                )
            )
            self.ended_at = time.monotonic()
            log.info("app %s: %s", self.app_id, outcome)
        else:  # stepped down or abandoned: the app goes on elsewhere (or after a restart)
            self.replication.close()
            for link in list(self.links.values()):
                self.links.pop(link.node, None)
                await link.close()
            if self.role.role is Role.STEPPED_DOWN:
                self.ended_at = time.monotonic()
        await self.backend.stop()
        self._publish(self.progress())
        self.done.set()

    def _publish(self, p: Progress) -> None:
        for q in self._watchers:
            q.put_nowait(p)
        self._on_change(self)


async def ask(peer: Peer, msg: object, me: Identity, timeout: float) -> object | None:
    """One request to ``peer`` over a fresh authenticated channel; None if it is silent."""
    for address in peer.addresses:
        try:
            ch = await connect(address, peer.port, key=me.key, node_id=me.node, timeout=timeout)
        except Exception:
            continue
        try:
            return await ch.request(msg, timeout=timeout)
        except Exception:
            return None
        finally:
            await ch.close()
    return None


async def query_app(peer: Peer, app: str, me: Identity, timeout: float) -> AppState | None:
    """Ask ``peer`` what it knows of ``app``; None if silent."""
    reply = await ask(peer, AppQuery(app), me, timeout)
    return reply if isinstance(reply, AppState) else None
