"""Recruitment: ask idle volunteers that fit for a reservation, and prepare each one; and
while none can be had, say why (``_waiting``) and wait, as an HTCondor job does.

An app with no fitting volunteer waits as long as it takes unless it has a ``wait_timeout``
(app.json, or ``submit --wait-timeout``): then the grid fails it once it has had no worker
that long, and gives up on a task nobody could ever run while the rest of the app runs.

Every Reserve (a re-homing too) carries the app's CE public key and the CE key's proof that
this node coordinates the app in this term, made for the one volunteer asked (app/ce_key.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from bonjourgrid.control.channel import connect
from bonjourgrid.control.dial import PREFERENCES
from bonjourgrid.control.messages import Fenced, Release, Reserve, ReserveReply
from bonjourgrid.coordinator import scheduling
from bonjourgrid.coordinator.app_coordinator_base import AppCoordinatorBase
from bonjourgrid.coordinator.matchmaking import Offer, fits, unmet, waiting_reason
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.coordinator import Role, WorkerStaged
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState

log = logging.getLogger(__name__)

_REFUSAL_BACKOFF = 2.0
"""Seconds before asking again a volunteer that refused us (it serves someone else)."""
_REFUSAL_MEMORY = 30.0
"""Seconds a refusal counts in the waiting reason ("N refused this app")."""


class Recruitment(AppCoordinatorBase):
    """The recruitment part of ``AppCoordinator`` (a mixin)."""

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

    def _explain_waiting(self, now: float) -> None:
        """Say why tasks that are ready have no volunteer (``_waiting``, shown in progress
        and ``bjgrid apps``); with a ``wait_timeout``, give up on a task that no volunteer
        seen could ever run once it has waited that long while the rest of the app runs."""
        offers = self._offers()
        refused = {n for n, t in self._refused.items() if now - t < _REFUSAL_MEMORY}
        capped = self._wanted_workers(fair=True) < self._wanted_workers(fair=False)
        if self.backend.places_tasks and not self.links:  # handed to the middleware at once
            waiting = [r.id for r in self.table.records() if r.state not in TERMINAL_STATES]
        else:
            waiting = list(self.table.ready())
        unmatched: list[tuple[str, str]] = []
        limit = self.spec.wait_timeout
        # The rest of the app runs or ran: give up on the task alone (else the app fails).
        progressing = bool(self.links) or self.table.counts().get(TaskState.DONE, 0) > 0
        for task_id in waiting:
            req = self.spec.task(task_id).requirements
            why = waiting_reason(
                offers,
                req,
                self.backend_name,
                app=self.app_id,
                mine=set(self.links),
                refused=refused,
                fair_capped=capped,
            )
            if why is None:
                self._unfit_since.pop(task_id, None)
                continue
            unmatched.append((task_id, why))
            never = unmet(offers, req, self.backend_name)
            since = self._unfit_since.setdefault(task_id, now)
            if never is not None and limit is not None and progressing and now - since > limit:
                wants = ", ".join(f"{k}={v}" for k, v in req.to_json().items() if v)
                reason = f"no volunteer satisfies its requirements ({wants}): {never}"
                log.warning("app %s: task %s: %s", self.app_id, task_id, reason)
                self._record(je.GaveUp(task_id, reason))
        text = ""
        if unmatched:
            task_id, why = unmatched[0]
            more = f" and {len(unmatched) - 1} more" if len(unmatched) > 1 else ""
            text = f"{why}, for task {task_id}{more}"
        if text != self._waiting:
            if text:
                log.info("app %s: waiting: %s", self.app_id, text)
            self._waiting = text

    def _ready_fitting(self, nodes: list[str]) -> int:
        """Ready tasks that one of the workers ``nodes`` could run: an app waiting for a
        volunteer that fits some task must not keep idle workers that none of its tasks fits."""
        offers = [o for n in nodes if (o := self.links[n].offer) is not None]
        if len(offers) < len(nodes):  # a worker whose record we lack: assume it fits
            return len(self.table.ready())
        return sum(
            1
            for t in self.table.ready()
            if any(fits(o, self.spec.task(t).requirements, self.backend_name) for o in offers)
        )

    def _waited_too_long(self, without_worker: float) -> str | None:
        """The reason to fail the app after ``without_worker`` seconds with no worker at all,
        or None: it has no ``wait_timeout`` (it waits), or that is not over yet."""
        limit = self.spec.wait_timeout
        if limit is None or without_worker <= limit or self.table.finished():
            return None  # (finished: the last waiting task was just given up on)
        reason = f"no volunteer took the app within its wait timeout ({limit:g} s)"
        if self._waiting:
            reason += f": {self._waiting}"
        if self._last_refusal:
            reason += f" (last refusal: {self._last_refusal})"
        return reason

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
        for address in PREFERENCES.order(offer.node, offer.addresses):
            try:
                ch = await connect(
                    address,
                    offer.port,
                    key=self.me.key,
                    node=self.me.node_key,
                    timeout=cfg.connect_timeout,
                    expect=offer.node,  # the link's node is then the proven peer
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
                    ce_key=self.ce_key.public.hex(),
                    # bound to the volunteer the handshake proved (useless at any other)
                    proof=self.ce_key.prove(self.app_id, self.term, self.me.node, ch.peer_node),
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
