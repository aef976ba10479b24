"""One application in this daemon: its coordinator while this daemon coordinates it, and its
copy while this daemon is one of its replicas.

It lives in the host's daemon (not in ``bjgrid submit``), so closing the terminal does not
kill the app. What it holds is the app's own (spec, bundle, CE key, the journal's rows for
it, the result store) and the role (states/coordinator.py): RECRUITING/RUNNING while
coordinating; STANDBY on a replica; TAKING_OVER after an election (or a restart).

* **Coordinating** (``run``): every decision is the ``AppEngine``'s (bonjourgrid/engine/app.py,
  the engine the simulation runs); coordinator/shell.py feeds it and carries out its actions
  with links, the journal, the result store and the backend. The engine owns the task table
  while it runs; this object reads it (progress, results, the snapshot a new replica gets).
* **Following** (``follow_append``/``follow_members``): a replica takes the coordinator's
  journal stream under the quorum rules (faulttolerance/quorum.py): files first, then the
  journal, then its own task table; the election state (``voter``) is saved before any
  answer leaves. daemon/election.py runs the replica engine over it; ``take_over`` claims
  the term an election won, and ``run`` coordinates from the copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import CoordinatorBackend
from bonjourgrid.ce_backends.registry import CoordinatorContext, make_coordinator
from bonjourgrid.config import Config
from bonjourgrid.control.messages import AppState, JournalAck, JournalAppend, ReplicaOpen, Replicas
from bonjourgrid.coordinator import fairshare, results_detail
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Identity, Peer
from bonjourgrid.coordinator.progress import AppProgress as Progress
from bonjourgrid.coordinator.result_store import ResultStore, results_document
from bonjourgrid.coordinator.shell import CoordinatorShell
from bonjourgrid.engine.app import AppEngine, AppTiming
from bonjourgrid.engine.app_events import CancelRequested, Stop, TermSeen
from bonjourgrid.engine.placement import for_backend
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter
from bonjourgrid.states import coordinator as cr
from bonjourgrid.states.coordinator import CoordinatorRole, Role
from bonjourgrid.states.tasktable import TaskTable

log = logging.getLogger(__name__)


class AppCoordinator:
    """One app in this daemon (coordinator or replica); the module docstring says how."""

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
        self.spec = spec
        self.bundle = bundle
        self.bundle_sha = sha256_hex(bundle)
        self.digest = digest
        self.user = user
        self.me = me
        self.config = config
        self.offers = offers
        self.rivals = rivals
        self.claims = claims
        self.role = role or CoordinatorRole(app_id)
        self._table = TaskTable(spec.tasks)
        self._worker_hosts: dict[str, str] = dict(hosts or {})
        """Node id -> host name of every worker that ran something."""
        self._backend_saved: dict[str, str] = {}
        for text in entries:
            self._replay(je.decode(text))
        self._seq = len(entries)
        self.journal = journal
        self.store = ResultStore(store_root)
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
        self._address = address
        self._on_change = on_change
        self._watchers: set[asyncio.Queue[Progress]] = set()
        self._shell: CoordinatorShell | None = None
        self._cancel_asked: str | None = None
        self._abandoned = False
        self._last_published: Progress | None = None
        self.ended_at: float | None = None
        self.done = asyncio.Event()
        self.times = results_detail.TaskTimes()
        """Wall-clock start/end of the tasks this coordinator saw run (results.json)."""

    # --- what the daemon reads ----------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.role.term

    @property
    def table(self) -> TaskTable:
        """The task table: the engine's while it coordinates here, else this copy's."""
        return self._shell.engine.table if self._shell is not None else self._table

    @property
    def seq(self) -> int:
        """Entries in this daemon's journal of the app."""
        return self._shell.engine.seq if self._shell is not None else self._seq

    @property
    def worker_hosts(self) -> dict[str, str]:
        return self._shell.engine.worker_hosts if self._shell is not None else self._worker_hosts

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
        shell = self._shell
        return Progress(
            app=self.app_id,
            name=self.spec.name,
            role=self.role.role.value,
            counts=dict(counts),
            workers=len(shell.engine.ledger.workers) if shell is not None else 0,
            ended=self.role.ended,
            outcome=self.outcome,
            reason=self.role.reason,
            waiting="" if self.role.ended or shell is None else shell.engine.waiting.text,
        )

    def claim(self) -> fairshare.Claim:
        """This app's fair-share claim, as published in its coordinator record."""
        if self._shell is None:
            return fairshare.Claim(self.app_id, 0, 0, self.spec.weight)
        return self._shell.engine.claim()

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

    def publish(self) -> None:
        """Tell the watchers (``bjgrid submit``, ``watch``) when the progress changed."""
        p = self.progress()
        if p == self._last_published:
            return
        self._last_published = p
        for q in self._watchers:
            q.put_nowait(p)
        self._on_change(self)

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

    # --- what the daemon asks -----------------------------------------------------------------

    async def cancel(self, reason: str = "cancelled by the user") -> None:
        if self.role.ended:
            return
        if self._shell is not None:
            self._shell.feed(CancelRequested(time.monotonic(), reason))
        else:
            self._cancel_asked = reason  # run() starts with it

    def wake(self) -> None:
        """The mDNS view changed: the engine may recruit now rather than at its next tick."""
        if self._shell is not None:
            self._shell.wake()

    def ended_upstream(self, outcome: str) -> None:
        """A replica's copy: its coordinator sent AppEnded. The role ends with the outcome
        (ValueError for one that is not a role)."""
        self.role.handle(cr.AppEnded(Role(outcome)))
        self.ended_at = time.monotonic()
        self.done.set()

    def yield_to(self, term: int) -> None:
        """A coordinator of ``term`` opened a replica stream to this daemon, which coordinates
        the app under a term no higher: step down and stop acting."""
        seen = term + 1 if self.term == term else term
        if self._shell is not None:
            self._shell.feed(TermSeen(time.monotonic(), seen))
        else:
            self.role.handle(cr.TermSeen(seen))
        self.abandon()

    def abandon(self) -> None:
        """The daemon stops without ending the app: stop acting, keep the journal as it is
        (a replica takes over, or this daemon resumes the app when it starts again)."""
        self._abandoned = True
        if self._shell is not None:
            self._shell.feed(Stop(time.monotonic()))

    def take_over(self, term: int = 0) -> None:
        """An elected replica claims the ``term`` it won (a restarted coordinator: the next
        term it has not voted in); ``run`` follows. The replica set is the one this node
        knew: results are committed by its write quorums (faulttolerance/quorum.py)."""
        term = term or max(self.term, self.voter.voted) + 1
        if term - 1 > self.term:
            self.role.handle(cr.TermSeen(term - 1))
        self.role.handle(cr.CoordinatorLost())
        self.voter = Voter(self.term, self.me.node, max(self.term, self.voter.voted))
        self.journal_term = self.term
        self.coordinator = (self.me.node, self.me.host)
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

    # --- coordinating -------------------------------------------------------------------------

    async def run(self) -> None:
        """Coordinate the app to its end (or until the daemon stops). Never raises for the
        app's own failures."""
        shell, backend = self.coordinate()
        engine = shell.engine
        try:
            await shell.run(backend)
        finally:
            self._shell = None
            self._table, self._seq = engine.table, engine.seq
            self._worker_hosts = engine.worker_hosts
            if self.role.ended:
                self.ended_at = time.monotonic()
                log.info("app %s: %s", self.app_id, self.role.role.value)
            self.publish()
            self.done.set()

    def coordinate(self) -> tuple[CoordinatorShell, CoordinatorBackend]:
        """The engine, built from this daemon's journal of the app, in its shell, and the
        backend the shell is to run (``run`` does; a test may drive the shell itself)."""
        cfg = self.config
        engine = AppEngine(
            app=self.app_id,
            spec=self.spec,
            me=self.me.node,
            now=time.monotonic(),
            timing=AppTiming(
                recruit_retry=cfg.recruit_retry,
                heartbeat_interval=cfg.heartbeat_interval,
                rehome_grace=cfg.rehome_grace,
                connect_timeout=cfg.connect_timeout,
                recruit_timeout=cfg.recruit_timeout,
            ),
            role=self.role,
            entries=[je.decode(t) for t in self.journal.entries(self.app_id)],
            members=self.members,
            hosts=self._worker_hosts,
        )
        shell = CoordinatorShell(self, engine)
        backend = make_coordinator(
            self.spec.backend,
            CoordinatorContext(
                app=self,
                address=self._address(),
                root=self.store.root / "ce",
                on_result=shell.on_backend_result,
                saved=dict(self._backend_saved),
            ),
        )
        engine.placement = for_backend(self.spec.backend, backend.places_tasks)
        self._shell = shell
        if self._cancel_asked is not None:
            shell.feed(CancelRequested(time.monotonic(), self._cancel_asked))
        if self._abandoned:
            shell.feed(Stop(time.monotonic()))
        return shell, backend

    def save_role(self) -> None:
        ended = time.time() if self.role.ended else None
        fields: dict[str, object] = {"role": self.role.role.value, "reason": self.role.reason}
        if self.role.role is Role.STEPPED_DOWN:
            fields["term"] = self.term
        self.journal.update_app(self.app_id, ended=ended, **fields)

    def save_members(self, members: Members) -> None:
        self.members = members
        self.replica_ranks = members.everyone()
        self.journal.update_app(
            self.app_id,
            replicas=members.nodes,
            members_version=members.version,
            members_old=members.old,
        )

    def snapshot(self, ranks: tuple[str, ...]) -> ReplicaOpen:
        """Everything journaled so far, for a new replica (with the CE key, so that an elected
        replica can prove to the workers that it coordinates the app)."""
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

    # --- following a coordinator's journal (a replica) ----------------------------------------

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
            self.role.handle(cr.TermSeen(term))
        self.save_election()

    def _fence(self) -> int:
        return max(self.term, self.voter.term)

    def follow_append(self, msg: JournalAppend) -> JournalAck:
        """Take entry ``msg.seq`` unless the stream is refused — a lower term, or the same
        term from another node than the one followed (the refusal carries the higher term,
        which fences the sender), or a new term's stream that did not open with a snapshot
        (ok False: the coordinator sends one)."""
        if not self.voter.accepts(msg.term, self.coordinator[0]):
            return JournalAck(self.app_id, self._fence(), self.seq, False)
        if msg.term != self.journal_term:
            return JournalAck(self.app_id, msg.term, self.seq, False)
        ok = self.replicate(msg)
        return JournalAck(self.app_id, msg.term, self.seq, ok, self.members.version)

    def follow_members(self, msg: Replicas) -> JournalAck:
        """The coordinator's replica set (journaled like an entry)."""
        if not self.voter.accepts(msg.term, self.coordinator[0]):
            return JournalAck(self.app_id, self._fence(), self.seq, False)
        if msg.term != self.journal_term:
            return JournalAck(self.app_id, msg.term, self.seq, False)
        if msg.version >= self.members.version:
            old = msg.old if msg.joint else None
            self.save_members(Members(msg.version, msg.replicas, old))
        return JournalAck(self.app_id, msg.term, self.seq, True, self.members.version)

    def replicate(self, msg: JournalAppend) -> bool:
        """Take entry ``msg.seq`` from the coordinator: files first, then the journal, then
        the table. False on a gap (the coordinator then sends a snapshot)."""
        if msg.seq <= self._seq:
            return True  # a duplicate
        if msg.seq != self._seq + 1:
            log.warning("app %s: journal gap (have %d, got %d)", self.app_id, self._seq, msg.seq)
            return False
        entry = je.decode(msg.entry)
        if msg.outputs and isinstance(entry, (je.Finished, je.Abandoned)):
            self.store.stage(entry.task, entry.attempt, msg.outputs)
            self.store.promote(entry.task, entry.attempt)
        self.journal.append(self.app_id, msg.seq, msg.entry)
        self._replay(entry)
        self._seq = msg.seq
        return True

    def _replay(self, entry: je.Entry) -> None:
        je.apply(self._table, entry)
        if isinstance(entry, (je.Started, je.Finished)) and entry.worker:
            self._worker_hosts[entry.worker] = entry.host
        elif isinstance(entry, je.BackendState):
            self._backend_saved = dict(entry.data)
