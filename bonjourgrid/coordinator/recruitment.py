"""Recruitment: ask idle volunteers that fit for a reservation, and prepare each one.

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
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.states.coordinator import Role, WorkerStaged
from bonjourgrid.states.taskstate import TERMINAL_STATES

log = logging.getLogger(__name__)

_REFUSAL_BACKOFF = 2.0
"""Seconds before asking again a volunteer that refused us (it serves someone else)."""


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
