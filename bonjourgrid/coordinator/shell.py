"""The daemon's shell around one app's ``AppEngine`` (bonjourgrid/engine/app.py): the same
engine the simulation runs (sim/coordinator.py), fed what happened on the LAN and carrying
out its actions with real links, the SQLite journal, the result store and the backend.

Every rule lives in the engine: placement, recruiting and releasing, fair share, waiting,
the replica set, commit on ``W`` durable copies and acknowledgement, step-down on a higher
term, takeover reconciliation, the end. This file only does I/O::

    LAN / backend / user                 shell                        engine
    --------------------                 -----                        ------
    mDNS view, timers            ->  Seen, Tick               ->
    ReserveReply / Fenced        ->  Reserved / ReserveFailed ->  handle(event)
    TaskResult, HeartbeatAck,    ->  FromWorker               ->      |
      GiveBack, JournalAck, ...                                       v
    link closed / silent         ->  LinkLost                      actions
    backend's finished attempt   ->  BackendResult
                                 <-  Recruit: dial + Reserve (coordinator/reserve.py)
                                 <-  Prepare / Launch: the backend
                                 <-  StageOutputs / Discard: the result store
                                 <-  Append: the journal, then every replica's feed
                                 <-  Ack: ResultAck (or the backend may forget it)
                                 <-  Release / CloseLink, Feed / Unfeed / Resync, Probe, ...

One event queue per app: ``feed`` runs the engine for one event and carries out its actions
in order; an event that arrives while actions are being carried out waits its turn in the
queue. Actions never block the loop: what waits for the network, a thread or the backend
runs as a background task and feeds its outcome back as the next event.

Group commit (coordinator/group_commit.py): entries appended within one turn of the loop
are committed together; ``Ack`` and ``Launch`` wait behind them, and any other action that
depends on the journal commits them first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING

from bonjourgrid.control.messages import (
    AppEnded,
    Fenced,
    GiveBack,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Release,
    Replicas,
    ResultAck,
    TaskResult,
)
from bonjourgrid.coordinator.group_commit import GroupCommit
from bonjourgrid.coordinator.peers import Peer, query_app
from bonjourgrid.coordinator.reserve import Asker, Refused, reserve
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.engine import app_events as ev
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.tasktable import Attempt

if TYPE_CHECKING:
    from bonjourgrid.ce_backends.base import CoordinatorBackend
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.engine.app import AppEngine

log = logging.getLogger(__name__)

_FROM_WORKERS = (TaskResult, GiveBack, HeartbeatAck, JournalAck, Fenced)
"""What a worker's link feeds the engine (anything else is a reply ``expect`` awaits)."""
_WAKING = (ev.StageOutputs, ev.Append, ev.Ack, ev.Release, ev.Ended)
"""Actions after which the engine may have more to do at once (place, release, end): a
result being staged has freed its slot (engine/ledger.py), so the next task is placed while
it commits."""
_HELD = (ev.Ack, ev.Launch)
"""Actions carried out only once the entries gathered before them are committed."""
_INDEPENDENT = (
    ev.StageOutputs,
    ev.Discard,
    ev.Recruit,
    ev.Prepare,
    ev.Probe,
    ev.Unfeed,
    ev.CloseLink,
    ev.NotCommitted,
    ev.Note,
)
"""Actions that need not wait for gathered entries; any other action commits them first."""


class CoordinatorShell:
    def __init__(self, app: AppCoordinator, engine: AppEngine) -> None:
        self.app = app
        self.engine = engine
        self.config = app.config
        self.backend: CoordinatorBackend | None = None
        self.links: dict[str, WorkerLink] = {}
        self.fed: set[str] = set()
        """Replicas the journal stream goes to (the engine's ``Feed``/``Unfeed``)."""
        self.asker = Asker(
            app.app_id,
            app.me,
            app.config,
            app.spec,
            app.ce_key,
            app.bundle_sha,
            signer=app.signer,
            signature=app.signature,
        )
        self.outcome: str | None = None
        """None while the engine runs; then its ``Ended`` outcome ("" when stopped)."""
        self.broken: Exception | None = None
        """The action that could not be carried out (the shell stopped there)."""
        self._queue: deque[ev.Event] = deque()
        self._feeding = False
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._backend_waits: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._rival_check: asyncio.Task[None] | None = None
        self._rivals_checked = 0.0
        self.commit = GroupCommit(
            app.app_id,
            app.store,
            app.journal,
            stream=self._stream,
            carry_out=self._do,
            on_failure=self._commit_failed,
        )

    # --- the event queue ----------------------------------------------------------------------

    def feed(self, event: ev.Event) -> None:
        """Run the engine for ``event`` and carry out its actions (queued behind any event
        being handled now). An action that fails (the journal cannot be written) breaks the
        shell: nothing after it is carried out — no acknowledgement may follow an entry that
        is not on disk — and the app stops here as if the daemon stopped (its journal is
        what the disk holds; a replica takes over, or a restart resumes it)."""
        self._queue.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._queue and self.broken is None:
                for action in self.engine.handle(self._queue.popleft()):
                    try:
                        self._carry_out(action)
                    except Exception as e:
                        log.exception("app %s: cannot carry out %s", self.app.app_id, action)
                        self.broken = e
                        self._wake.set()
                        break
                    if isinstance(action, _WAKING):
                        self._wake.set()
        finally:
            if self.broken is not None:
                self._queue.clear()
                self.commit.stop()  # nothing gathered is committed after a failed action
            self._feeding = False

    def wake(self) -> None:
        """Something changed outside (the mDNS view): let the engine look now."""
        self._wake.set()

    def _carry_out(self, action: ev.Action) -> None:
        if self.commit.pending:
            if isinstance(action, _HELD):
                self.commit.hold(action)
                return
            if not isinstance(action, (ev.Append, *_INDEPENDENT)):
                self.commit.flush()
        self._do(action)

    def _commit_failed(self, e: Exception) -> None:
        log.error("app %s: cannot commit the journal: %r", self.app.app_id, e, exc_info=e)
        self.broken = e
        self._queue.clear()
        self._wake.set()

    async def run(self, backend: CoordinatorBackend) -> None:
        """Start the backend, then tick the engine until it ends; stop the backend."""
        self.backend = backend
        try:
            await backend.start()
            saved = backend.saved_state()
            if saved:
                self.feed(ev.BackendSaved(time.monotonic(), backend.name, tuple(saved.items())))
            await self._tick_until_ended()
        except Exception as e:
            log.exception("app %s: coordinator failed", self.app.app_id)
            self.feed(ev.Failed(time.monotonic(), f"coordinator error: {e}"))
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(self._tick_until_ended(), 3 * self.config.connect_timeout)
        finally:
            await self._wind_down()

    async def _tick_until_ended(self) -> None:
        while self.outcome is None and self.broken is None:
            now = time.monotonic()
            self.feed(self._seen())
            self.feed(ev.Tick(now))
            self._check_rivals(now)
            self.app.publish()
            if self.outcome is not None or self.broken is not None:
                return
            self._wake.clear()
            timeout = max(0.0, self.engine.wake_at() - time.monotonic())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _wind_down(self) -> None:
        if self.broken is None:
            try:
                self.commit.flush()
            except Exception as e:
                self.commit.stop()
                self._commit_failed(e)
        if self._rival_check is not None:
            self._rival_check.cancel()
        for t in list(self._background):
            if not t.done():
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(t), 5.0)
        for link in list(self.links.values()):
            self.links.pop(link.node, None)
            await link.close()
        for fut in self._backend_waits.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the app is not coordinated here any more"))
        if self.backend is not None:
            await self.backend.stop()

    def _seen(self) -> ev.Seen:
        return ev.Seen(tuple(self.app.offers()), tuple(self.app.claims()))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._finished)

    def _finished(self, t: asyncio.Task[None]) -> None:
        self._background.discard(t)
        if not t.cancelled() and (e := t.exception()) is not None:
            log.error("app %s: %s failed: %r", self.app.app_id, t.get_coro(), e, exc_info=e)

    # --- carrying out the engine's actions ---------------------------------------------------

    def _do(self, a: ev.Action) -> None:
        app = self.app
        if isinstance(a, ev.Append):
            self._append(a)
        elif isinstance(a, ev.Ack):
            if a.via_backend:
                fut = self._backend_waits.get((a.task, a.attempt))
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif (link := self.links.get(a.worker)) is not None:
                link.post(ResultAck(app.app_id, a.task, a.attempt, a.term))
        elif isinstance(a, ev.Launch):
            self._spawn(self._launch(a))
        elif isinstance(a, ev.StageOutputs):
            self._spawn(self._stage(a.result))
        elif isinstance(a, ev.Discard):
            app.store.discard(a.task, a.attempt)
        elif isinstance(a, ev.Recruit):
            self._spawn(self._recruit(a))
        elif isinstance(a, ev.Prepare):
            self._spawn(self._prepare(a.worker))
        elif isinstance(a, ev.Release):
            if (link := self.links.pop(a.worker, None)) is not None:
                self._spawn(self._goodbye(link, a.reason, a.outcome))
        elif isinstance(a, ev.CloseLink):
            if (link := self.links.get(a.worker)) is not None:
                # its reader sees the close: the loss (LinkLost) is the engine's next event
                self._spawn(link.channel.close())
        elif isinstance(a, ev.NotCommitted):
            fut = self._backend_waits.get((a.task, a.attempt))
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError(a.reason))
        elif isinstance(a, (ev.Feed, ev.Resync)):
            if (link := self.links.get(a.node)) is not None:
                self.fed.add(a.node)
                link.post(app.snapshot(self.engine.members.everyone()))
                link.post(self._members_message())
                if isinstance(a, ev.Feed):
                    log.info("app %s: %s keeps the journal", app.app_id, link.host)
        elif isinstance(a, ev.Unfeed):
            self.fed.discard(a.node)
        elif isinstance(a, ev.MembersChanged):
            app.save_members(a.members)
            msg = self._members_message()
            for node in sorted(self.fed):
                if (link := self.links.get(node)) is not None:
                    link.post(msg)
        elif isinstance(a, ev.Probe):
            self._spawn(self._probe(a.node))
        elif isinstance(a, ev.SaveRole):
            app.save_role()
        elif isinstance(a, ev.Ended):
            self.outcome = a.outcome
        elif isinstance(a, ev.Note):
            log.log(logging.WARNING if a.warning else logging.INFO, "%s", a.text)

    def _append(self, a: ev.Append) -> None:
        """Files first (renamed now, made durable at the flush), then the journal, then the
        replicas' feeds — gathered for the next ``flush``."""
        app = self.app
        promoted = False
        if a.promote and isinstance(a.entry, (je.Finished, je.Abandoned)):
            app.store.promote(a.entry.task, a.entry.attempt, sync=False)
            promoted = True
        text = je.encode(a.entry)
        msg = JournalAppend(app.app_id, self.engine.term, a.seq, text, a.host, a.outputs)
        self.commit.add(msg, promoted=promoted)
        app.times.note(a.entry, self.engine.table, time.time())

    def _stream(self, msg: JournalAppend) -> None:
        for node in sorted(self.fed):
            if (link := self.links.get(node)) is not None:
                link.post(msg)

    def _members_message(self) -> Replicas:
        m = self.engine.members
        return Replicas(self.app.app_id, self.engine.term, m.nodes, m.version, m.old or (), m.joint)

    # --- links ------------------------------------------------------------------------------

    async def _recruit(self, a: ev.Recruit) -> None:
        got = await reserve(self.asker, a.offer, a.term)
        now = time.monotonic()
        if isinstance(got, Refused):
            self.feed(ev.ReserveFailed(now, a.offer.node, got.reason, got.term))
            return
        node = a.offer.node
        link = WorkerLink(
            got.channel,
            node=node,
            host=a.offer.host,
            slots=got.slots,
            app=self.app.app_id,
            term=a.term,
            config=self.config,
            on_message=self._on_message,
            on_lost=self._on_lost,
        )
        if self.outcome is not None:  # the engine ended meanwhile: let the volunteer go
            link.start()
            await self._goodbye(link, "app ended")
            return
        old = self.links.get(node)
        self.links[node] = link
        link.start()
        if old is not None:
            await old.close()
        self.feed(ev.Reserved(now, node, a.offer.host, got.slots, a.offer))

    async def _prepare(self, node: str) -> None:
        link = self.links.get(node)
        if link is None or self.backend is None:
            return
        error = ""
        try:
            await self.backend.prepare(link)
        except Exception as e:
            error = str(e) or type(e).__name__
        if self.links.get(node) is link:
            self.feed(ev.Prepared(time.monotonic(), node, error))

    def _on_message(self, link: WorkerLink, msg: object) -> None:
        if self.links.get(link.node) is link and isinstance(msg, _FROM_WORKERS):
            self.feed(ev.FromWorker(time.monotonic(), link.node, msg))

    def _on_lost(self, link: WorkerLink, reason: str) -> None:
        if self.links.get(link.node) is not link:
            return  # released on purpose, or replaced by a newer link
        del self.links[link.node]
        self.fed.discard(link.node)
        if self.backend is not None:
            self.backend.worker_lost(link.node)
        log.warning("app %s: lost worker %s (%s)", self.app.app_id, link.host, reason)
        self.feed(ev.LinkLost(time.monotonic(), link.node, reason))

    async def _goodbye(self, link: WorkerLink, reason: str, outcome: str = "") -> None:
        if outcome:
            link.post(AppEnded(self.app.app_id, self.engine.term, outcome))
        link.post(Release(self.app.app_id, self.engine.term, reason))
        await link.flush(self.config.connect_timeout)
        # Let the worker close first: closing with its acks unread would reset the
        # connection, and a reset can drop our last messages before the worker reads them.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(link.peer_closed.wait(), self.config.connect_timeout)
        await link.close()
        log.info("app %s: released %s (%s)", self.app.app_id, link.host, reason)

    # --- tasks and results ---------------------------------------------------------------------

    async def _launch(self, a: ev.Launch) -> None:
        app, backend = self.app, self.backend
        assert backend is not None
        link = self.links.get(a.worker) if a.worker else None
        if a.worker and link is None:
            return  # lost meanwhile: its loss requeued the attempt
        task = app.spec.task(a.task)
        try:
            inputs = b""
            if task.after:  # a tar of the predecessors' outputs, made off the loop
                inputs = await asyncio.to_thread(app.store.inputs_for, task, app.spec)
            await backend.launch(task, Attempt(a.task, a.attempt, a.worker), link, inputs)
        except Exception as e:
            where = link.host if link is not None else f"the {app.spec.backend} CE"
            log.warning("app %s: launch of %s on %s failed: %s", app.app_id, a.task, where, e)
            self.feed(ev.LaunchFailed(time.monotonic(), a.task, a.attempt, str(e)))
            if link is not None:
                await link.channel.close()  # its loss requeues the attempt

    async def _stage(self, r: TaskResult) -> None:
        error = ""
        try:
            await asyncio.to_thread(self.app.store.stage, r.task, r.attempt, r.outputs)
        except Exception as e:
            why = f"{r.task}#{r.attempt}: {e}"
            log.warning("app %s: unreadable outputs from %s", self.app.app_id, why)
            error = str(e) or type(e).__name__
        self.feed(ev.OutputsStaged(time.monotonic(), r.task, r.attempt, error))

    async def on_backend_result(self, r: TaskResult, node: str | None) -> None:
        """A finished attempt from a backend whose middleware ran it (HTCondor, BOINC).
        Returns once it is committed and durable on the replicas; raises if it was not (the
        backend keeps it and delivers it again)."""
        app = self.app
        if r.app != app.app_id or r.task not in app.spec.task_ids:
            log.warning("app %s: dropped a backend result for %s/%s", app.app_id, r.app, r.task)
            return
        key = (r.task, r.attempt)
        fut = self._backend_waits.get(key)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._backend_waits[key] = fut
            self.feed(ev.BackendResult(time.monotonic(), r, node or ""))
            if not fut.done() and key not in self.engine.committing:
                fut.set_exception(RuntimeError(f"{r.task}#{r.attempt} is not committed here"))
        try:
            await asyncio.shield(fut)
        finally:
            if fut.done() and self._backend_waits.get(key) is fut:
                del self._backend_waits[key]

    # --- asking other daemons ------------------------------------------------------------------

    async def _probe(self, node: str) -> None:
        """A replica-set member not linked: what does it hold of the app?"""
        offer = next((o for o in self.app.offers() if o.node == node), None)
        if offer is None:
            return
        peer = Peer(node, offer.addresses, offer.port, 0)
        st = await query_app(peer, self.app.app_id, self.app.me, self.config.ping_timeout)
        if st is not None:
            self.feed(ev.MemberState(time.monotonic(), node, st.term, st.role))

    def _check_rivals(self, now: float) -> None:
        """A coordinator record for this app with a higher term (mDNS, informative): ask
        that node over the control channel (one question at a time, every heartbeat)."""
        if now - self._rivals_checked < self.config.heartbeat_interval:
            return
        if self._rival_check is not None and not self._rival_check.done():
            return
        self._rivals_checked = now
        term, me = self.engine.term, self.app.me.node
        rivals = [p for p in self.app.rivals() if p.node != me and p.term > term]
        if rivals:
            self._rival_check = asyncio.ensure_future(self._ask_rivals(rivals))

    async def _ask_rivals(self, rivals: list[Peer]) -> None:
        for peer in rivals:
            st = await query_app(peer, self.app.app_id, self.app.me, self.config.ping_timeout)
            if st is not None and st.coordinating and st.term > self.engine.term:
                self.feed(ev.TermSeen(time.monotonic(), st.term))
                return
