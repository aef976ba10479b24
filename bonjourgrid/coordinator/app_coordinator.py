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

Where the parts live: this file holds the life cycle, the journal and the scheduling loop
(with the fair-share limits, seen through fairshare_view.py); recruitment.py reserves and
prepares volunteers; worker_events.py commits results and handles lost workers;
takeover.py takes over, re-homes, and steps down; replica_side.py follows a coordinator's
journal stream; peers.py says who we are and asks other daemons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import CoordinatorBackend
from bonjourgrid.ce_backends.registry import CoordinatorContext, make_coordinator
from bonjourgrid.config import Config
from bonjourgrid.control.messages import AppEnded, AppState, JournalAppend, Release
from bonjourgrid.coordinator import fairshare, results_detail, scheduling
from bonjourgrid.coordinator.app_coordinator_base import AppCoordinatorBase
from bonjourgrid.coordinator.fairshare_view import FairShareView
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Identity, Peer
from bonjourgrid.coordinator.progress import AppProgress as Progress
from bonjourgrid.coordinator.recruitment import Recruitment
from bonjourgrid.coordinator.replica_side import ReplicaSide
from bonjourgrid.coordinator.replication import Replication
from bonjourgrid.coordinator.result_store import ResultStore, results_document
from bonjourgrid.coordinator.takeover import Takeover
from bonjourgrid.coordinator.worker_events import WorkerEvents
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.faulttolerance.quorum import Members, Voter
from bonjourgrid.states.coordinator import (
    AllTasksTerminal,
    Cancel,
    CoordinatorRole,
    GridFailed,
    Role,
    TermSeen,
)
from bonjourgrid.states.coordinator import AppEnded as RoleAppEnded
from bonjourgrid.states.tasktable import Attempt, TaskTable

log = logging.getLogger(__name__)


class AppCoordinator(Recruitment, WorkerEvents, Takeover, ReplicaSide, AppCoordinatorBase):
    """One app's coordinator (or a replica of it); the module docstring says how it works.
    Its parts are mixins over one state: recruitment.py, worker_events.py, takeover.py,
    replica_side.py (app_coordinator_base.py declares what they share)."""

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
        ce_key: CEKey | None = None,
    ) -> None:
        self.app_id = app_id
        self.ce_key = ce_key or CEKey.generate()
        """The app's CE key (app/ce_key.py): every Reserve carries its proof of coordination;
        for a signed app it is the key the signature names (else volunteers refuse us)."""
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
        self.fair_share = FairShareView(app_id, config, offers, claims)
        """Volunteers seen and rivals' claims (their ``_bjg-coord`` records), for fair share."""
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
        self.times = results_detail.TaskTimes()
        """Wall-clock start/end of the tasks this coordinator saw run (results.json)."""

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
        stopped = self.role.ended and self.role.role.value != "finished"
        counts = results_detail.state_counts(self.table, self.role.reason if stopped else "")
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
        ended = self.role.ended and self.role.role.value != "finished"
        stopped_by = self.role.reason if ended else ""
        row = self.journal.app(self.app_id)
        started, end = (row.created, row.ended) if row is not None else (None, None)
        return results_document(
            self.app_id,
            self.spec,
            self.table,
            self.worker_hosts,
            times=self.times,
            stopped_by=stopped_by,
            app_outcome=results_detail.outcome(self.outcome, self.role.reason, started, end),
        )

    async def cancel(self, reason: str = "cancelled by the user") -> None:
        if self.role.ended:
            return
        self.role.handle(Cancel(reason))
        self._record(je.Cancelled(reason))
        self._save_role()
        self._wake.set()

    def ended_upstream(self, outcome: str) -> None:
        """A replica's copy: its coordinator sent AppEnded. The role ends with the outcome
        (ValueError for one that is not a role)."""
        self.role.handle(RoleAppEnded(Role(outcome)))
        self.ended_at = time.monotonic()
        self.done.set()

    def yield_to(self, term: int) -> None:
        """A coordinator of ``term`` opened a replica stream to this daemon, which coordinates
        the app under a term no higher: step down and stop acting."""
        self.role.handle(TermSeen(term + 1 if self.term == term else term))
        self.abandon()

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
        self.times.note(entry, self.table, time.time())
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

    def _save_role(self) -> None:
        ended = time.time() if self.role.ended else None
        self.journal.update_app(
            self.app_id, role=self.role.role.value, reason=self.role.reason, ended=ended
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
                self._explain_waiting(now)
                last_fit_check = now
            if now - last_rival_check >= self.config.heartbeat_interval:
                await self._check_rivals()
                last_rival_check = now
            self._release_useless()
            self.replication.update([k for k in self.links.values() if k.ready], self.term)
            if self.links:
                no_worker_since = now
            elif (reason := self._waited_too_long(now - no_worker_since)) is not None:
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
                je.Started(task_id, attempt.attempt, node, link.host, je.NO_CLOCK),
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
            self._record(je.Started(task_id, attempt.attempt, "", "", je.NO_CLOCK))
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

    def _wanted_workers(self, *, fair: bool = True) -> int:
        """More volunteers to ask for now; with ``fair``, no further than this app's fair
        share while rivals want machines too (fairshare.recruit_cap)."""
        limit = self.spec.workers if self.spec.workers is not None else len(self.spec.tasks)
        if fair and (rivals := self.fair_share.rival_claims()):
            machines = self.fair_share.machines()[0]
            limit = min(limit, fairshare.recruit_cap(self.claim(), rivals, machines))
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
        ready = self._ready_fitting(idle)  # a task none of them fits must not hold them
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
            self.app_id, len(self.links), min(more, self.fair_share.machines()[0]), self.spec.weight
        )

    def _release_above_share(self) -> None:
        """Let idle workers go (between tasks, never a running one) while this app holds more
        than its fair share and a rival below its own share wants more."""
        rivals = self.fair_share.rival_claims()
        if not rivals:
            return
        idle = [k.node for k in self.links.values() if k.ready and k.used == 0]
        keep = set(self.replication.ranks) | set(self._unconfirmed.values())
        for node in self.fair_share.to_release(self.claim(), rivals, idle, keep):
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
