"""One application's coordinator: recruit volunteers, run the tasks, collect, release.

It lives in the host's daemon (not in ``bjgrid submit``), so closing the terminal does not
kill the app. Loop: recruit idle volunteers that fit (reserve with a lease), let the backend
prepare each, place ready tasks on free slots, commit each result exactly once (by task and
attempt), requeue the tasks of lost workers, release workers as soon as nothing is left that
they could run, and at the end say "app finished"/"app cancelled" before releasing everyone
and withdrawing the coordinator record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import CoordinatorBackend
from bonjourgrid.ce_backends.embedded.coordinator import EmbeddedCoordinator
from bonjourgrid.config import Config
from bonjourgrid.control.channel import connect
from bonjourgrid.control.messages import (
    AppEnded,
    Release,
    Reserve,
    ReserveReply,
    ResultAck,
    TaskResult,
)
from bonjourgrid.coordinator.matchmaking import Offer, candidates, fits
from bonjourgrid.coordinator.result_store import ResultStore, results_document
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.daemon.local_messages import Progress
from bonjourgrid.gridkey import GridKey
from bonjourgrid.states.coordinator import (
    AllTasksTerminal,
    Cancel,
    CoordinatorRole,
    GridFailed,
    Role,
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
        on_change: Callable[[AppCoordinator], None] = lambda c: None,
    ) -> None:
        self.app_id = app_id
        self.spec = spec
        self.bundle = bundle
        self.bundle_sha = sha256_hex(bundle)
        self.digest = digest
        self.user = user
        self.me = me
        self.config = config
        self._offers = offers
        self.role = CoordinatorRole(app_id)
        self.table = TaskTable(spec.tasks)
        self.store = ResultStore(store_root)
        self.backend: CoordinatorBackend = EmbeddedCoordinator(self)
        self.links: dict[str, WorkerLink] = {}
        self.worker_hosts: dict[str, str] = {}
        """Node id -> host name of every worker that ran something."""
        self._refused: dict[str, float] = {}
        self._recruiting: set[str] = set()
        self._unfit_since: dict[str, float] = {}
        self._running: dict[tuple[str, int], tuple[WorkerLink, int]] = {}
        self._wake = asyncio.Event()
        self._watchers: set[asyncio.Queue[Progress]] = set()
        self._on_change = on_change
        self.ended_at: float | None = None
        self.done = asyncio.Event()

    # --- public ---------------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.role.term

    @property
    def outcome(self) -> str:
        """'' while running; then finished / cancelled / failed."""
        return self.role.role.value if self.role.ended else ""

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
        self.table.cancel(reason)
        self._wake.set()

    async def run(self) -> None:
        """Run the app to its end. Never raises for the app's own failures."""
        await self.backend.start()
        recruiter = asyncio.create_task(self._recruit_loop(), name=f"recruit {self.app_id}")
        try:
            await self._schedule_loop()
        except Exception as e:
            log.exception("app %s: coordinator failed", self.app_id)
            if not self.role.ended:
                self.role.handle(GridFailed(f"coordinator error: {e}"))
                self.table.cancel(self.role.reason)
        finally:
            recruiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recruiter
            await self._end()

    # --- scheduling -----------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        no_worker_since = last_fit_check = time.monotonic()
        last: Progress | None = None
        while not self.role.ended:
            if self.table.finished():
                self.role.handle(AllTasksTerminal())
                break
            await self._place_ready_tasks()
            if time.monotonic() - last_fit_check >= self.config.recruit_retry:
                self._give_up_unplaceable()
                last_fit_check = time.monotonic()
            await self._release_useless()
            if self.links:
                no_worker_since = time.monotonic()
            elif time.monotonic() - no_worker_since > self.config.recruit_timeout:
                reason = f"no suitable volunteer answered within {self.config.recruit_timeout:g} s"
                self.role.handle(GridFailed(reason))
                self.table.cancel(reason)
                break
            now = self.progress()
            if now != last:
                self._publish(now)
                last = now
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.recruit_retry)

    async def _place_ready_tasks(self) -> None:
        for task_id in self.table.ready():
            if not any(link.ready and link.free > 0 for link in self.links.values()):
                return  # nothing can be placed until a slot frees up
            task = self.spec.task(task_id)
            need = task.requirements.cpus
            usable = [
                link
                for link in self.links.values()
                if link.ready
                and link.free >= need
                and link.offer is not None
                and fits(link.offer, task.requirements, "embedded")
            ]
            if not usable:
                continue
            link = max(usable, key=lambda k: (k.free, k.node))
            attempt = self.table.start(task_id, link.node, time.monotonic())
            link.used += need
            self.worker_hosts[link.node] = link.host
            self._running[(task_id, attempt.attempt)] = (link, need)
            inputs = await asyncio.to_thread(self.store.inputs_for, task, self.spec)
            try:
                await self.backend.launch(task, attempt, link, inputs)
            except Exception as e:  # the link is gone; its loss handler requeues the attempt
                log.info(
                    "app %s: launch of %s on %s failed: %s", self.app_id, task_id, link.host, e
                )

    def _give_up_unplaceable(self) -> None:
        """Fail READY tasks that no worker and no idle volunteer has fitted for a while."""
        now = time.monotonic()
        offers = [link.offer for link in self.links.values() if link.offer is not None]
        offers += [o for o in self._offers() if o.state == "idle"]
        for task_id in self.table.ready():
            req = self.spec.task(task_id).requirements
            if any(fits(o, req, "embedded") for o in offers):
                self._unfit_since.pop(task_id, None)
                continue
            since = self._unfit_since.setdefault(task_id, now)
            if self.links and now - since > self.config.recruit_timeout:
                wants = ", ".join(f"{k}={v}" for k, v in req.to_json().items() if v)
                reason = f"no volunteer satisfies its requirements ({wants})"
                log.warning("app %s: task %s: %s", self.app_id, task_id, reason)
                self.table.give_up(task_id, reason)

    def _wanted_workers(self) -> int:
        """More workers are wanted only for READY tasks that found no free slot.

        Recruiting and releasing follow the same rule, so they never fight: a recruit always
        has a ready task waiting for it, and a worker is released only when no ready task is
        left (pending tasks become ready as running ones finish, on the workers that ran them).
        """
        unplaced = len(self.table.ready()) - len(self._recruiting)
        limit = self.spec.workers if self.spec.workers is not None else len(self.spec.tasks)
        room = limit - len(self.links) - len(self._recruiting)
        return max(0, min(unplaced, room))

    async def _release_useless(self) -> None:
        if self.table.ready():
            return
        for link in [k for k in self.links.values() if k.ready and k.used == 0]:
            await self._release(link, "no task left for this worker")

    async def _release(self, link: WorkerLink, reason: str, outcome: str | None = None) -> None:
        self.links.pop(link.node, None)
        with contextlib.suppress(Exception):
            if outcome:
                await link.send(AppEnded(self.app_id, self.term, outcome))
            await link.send(Release(self.app_id, self.term, reason))
        await link.close()
        log.info("app %s: released %s (%s)", self.app_id, link.host, reason)

    # --- recruitment ----------------------------------------------------------------------

    async def _recruit_loop(self) -> None:
        while not self.role.ended:
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
                found = candidates(self._offers(), needs, "embedded", exclude=busy)
                # Rival coordinators rank alike; a per-app tie-break spreads their first asks.
                found.sort(key=lambda o: (o.load, -o.slots, self._spread(o.node)))
                batch = found[:wanted]
                if batch:
                    await asyncio.gather(*(self._recruit(o) for o in batch))
                    continue
            await asyncio.sleep(self.config.recruit_retry)

    def _spread(self, node: str) -> str:
        return hashlib.sha256(f"{self.app_id}/{node}".encode()).hexdigest()

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
            if self.role.ended:
                await self._release(link, "app ended")
                return
            link.ready = True
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
                    "embedded",
                )
                reply = await ch.request(ask, timeout=cfg.connect_timeout)
            except Exception as e:
                log.debug("app %s: reservation of %s failed: %s", self.app_id, offer.host, e)
                await ch.close()
                return None
            if not isinstance(reply, ReserveReply) or not reply.accepted:
                why = reply.reason if isinstance(reply, ReserveReply) else type(reply).__name__
                log.info("app %s: %s refused: %s", self.app_id, offer.host, why)
                await ch.close()
                return None
            if self.role.ended:
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
            self.links[offer.node] = link
            link.start()
            log.info("app %s: reserved %s (%d slots)", self.app_id, offer.host, reply.slots)
            return link
        return None

    # --- events from workers -----------------------------------------------------------------

    async def _on_message(self, link: WorkerLink, msg: object) -> None:
        if isinstance(msg, TaskResult):
            await self._on_result(link, msg)

    async def _on_result(self, link: WorkerLink, r: TaskResult) -> None:
        key = (r.task, r.attempt)
        held = self._running.get(key)
        try:
            if r.app != self.app_id or r.task not in self.spec.task_ids:
                log.warning("app %s: dropped a result for %s/%s", self.app_id, r.app, r.task)
                return
            # Shielded: releasing or losing the link must not cancel a commit half done.
            accepted = await asyncio.shield(self._verified_commit(r))
            await link.send(ResultAck(self.app_id, r.task, r.attempt))
            if accepted:
                self._wake.set()
        finally:
            # The slot counts as busy until the result is committed, so the worker is not
            # released (and its reader cancelled) while the commit is under way.
            if held is not None and self._running.pop(key, None) is not None:
                held[0].used -= held[1]
                self._wake.set()

    async def _verified_commit(self, r: TaskResult) -> bool:
        if sha256_hex(r.outputs) != r.outputs_sha256:
            reason = "outputs corrupted in transit"
            return self.table.abandon(r.task, r.attempt, reason=reason, counts_as_failure=True)
        return await self._commit(r)

    async def _commit(self, r: TaskResult) -> bool:
        """Record an attempt exactly once; its files are in place before the table says so."""
        if self.table.record(r.task).state in TERMINAL_STATES:
            return False
        try:
            await asyncio.to_thread(self.store.stage, r.task, r.attempt, r.outputs)
        except Exception as e:
            log.warning(
                "app %s: unreadable outputs from %s#%d: %s", self.app_id, r.task, r.attempt, e
            )
            self.store.discard(r.task, r.attempt)
            return self.table.abandon(
                r.task, r.attempt, reason=f"unreadable outputs: {e}", counts_as_failure=True
            )
        now = time.monotonic()
        if r.exit_code is not None and (r.exit_code != 0 or not r.error):
            ok = self.table.finish(
                r.task, r.attempt, exit_code=r.exit_code, now=now, seconds=r.seconds
            )
        else:  # timed out, killed, or exit 0 without its declared outputs
            reason = r.error or "no exit status"
            ok = self.table.abandon(
                r.task, r.attempt, reason=reason, counts_as_failure=True, seconds=r.seconds
            )
        if ok:
            self.store.promote(r.task, r.attempt)
        else:
            self.store.discard(r.task, r.attempt)
        return ok

    async def _on_lost(self, link: WorkerLink, reason: str) -> None:
        if self.links.get(link.node) is not link:
            return  # released on purpose
        del self.links[link.node]
        lost: list[Attempt] = self.table.worker_lost(link.node)
        for a in lost:
            self._running.pop((a.task, a.attempt), None)
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
        outcome = self.role.role.value if self.role.ended else Role.FAILED.value
        for link in list(self.links.values()):
            await self._release(link, f"app {outcome}", outcome=outcome)
        await self.backend.stop()
        self.ended_at = time.monotonic()
        self._publish(self.progress())
        self.done.set()
        log.info("app %s: %s", self.app_id, outcome)

    def _publish(self, p: Progress) -> None:
        for q in self._watchers:
            q.put_nowait(p)
        self._on_change(self)
