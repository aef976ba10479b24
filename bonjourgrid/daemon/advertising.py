"""What the daemon tells the LAN and reads back from it: its volunteer record and its apps'
coordinator records (with their fair-share claims) out; the volunteers it may recruit, rival
coordinators and every app's claim in (mDNS, or the static ``--local`` list)."""

from __future__ import annotations

import asyncio

from bonjourgrid.coordinator.app_coordinator import AppCoordinator
from bonjourgrid.coordinator.fairshare import Claim
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Peer
from bonjourgrid.daemon.node_base import NodeDaemonBase
from bonjourgrid.daemon.status import ping
from bonjourgrid.discovery import CoordTxt, NodeTxt
from bonjourgrid.policy import PolicyState

_NOT_OFFERED = (PolicyState.BUSY.value, PolicyState.PAUSED.value)


class Advertising(NodeDaemonBase):
    """The discovery part of ``NodeDaemon`` (a mixin): records out, offers and claims in."""

    async def _advertise(self) -> None:
        self._kick.set()  # the volunteer's state changed: housekeeping re-times its tick
        if self.discovery is None or not self.volunteer:
            return
        h = self.host
        await self.discovery.set_volunteer(
            NodeTxt(
                grid=self.key.grid_id,
                node=h.node_id,
                host=h.hostname,
                cpus=h.cpus,
                slots=h.slots,
                mem_mb=h.mem_mb,
                os=h.os,
                arch=h.arch,
                backends=h.backends,
                policy=self._policy_value(),
                app=self.agent.app,
                coordinator=self.agent.coordinator,
                attributes=self.attributes,
                isolation=self.agent.isolation.mode,
                isolation_reason=self.agent.isolation.reason,
            )
        )

    def _policy_value(self) -> str:
        """The TXT ``p``: ``ok``, ``busy`` (the owner is at it) or ``paused`` (bjgrid pause)."""
        if not self.agent.owner_busy:
            return PolicyState.OK.value
        driver = getattr(self, "policy", None)
        paused = driver is not None and driver.state is PolicyState.PAUSED
        return PolicyState.PAUSED.value if paused else PolicyState.BUSY.value

    def offers(self) -> list[Offer]:
        """Volunteers a coordinator here may recruit: from mDNS, or the static list."""
        if self.discovery is None:
            return list(self._static_offers)
        return [
            Offer(
                node=m.node,
                host=m.host,
                addresses=m.addresses,
                port=m.port,
                state=m.state,
                cpus=m.txt.cpus,
                slots=m.txt.slots,
                mem_mb=m.txt.mem_mb,
                os=m.txt.os,
                arch=m.txt.arch,
                backends=m.txt.backends,
                load=m.txt.load,
                app=m.txt.app,
                attributes=m.txt.attributes,
                # An idle machine whose owner is at it refuses reservations: never asked
                # (matchmaking.fits), only counted when saying why an app waits.
                # Busy or paused (bjgrid pause): takes no grid work. An unknown value is not
                # taken for busy, as in bjgrid status (the volunteer refuses if it must).
                owner_busy=m.state == "idle" and m.txt.policy in _NOT_OFFERED,
            )
            for m in self.discovery.machines()
        ]

    async def _refresh_static(self) -> None:
        """``--local`` workers have no mDNS: learn their state by asking them directly."""
        pongs = await asyncio.gather(
            *(
                ping(a, p, self.key, self.me.node_key, self.config.ping_timeout)
                for a, p in self.static_peers
            )
        )
        h = self.host
        self._static_offers = [
            Offer(
                node=pong.node,
                host=pong.host,
                addresses=(addr,),
                port=port,
                state=pong.state,
                cpus=pong.cpus,
                slots=pong.slots,
                mem_mb=h.mem_mb,
                os=h.os,
                arch=h.arch,
                backends=pong.backends,
            )
            for (addr, port), pong in zip(self.static_peers, pongs, strict=True)
            if pong is not None
        ]

    def _rivals(self, app_id: str) -> list[Peer]:
        if self.discovery is None:
            return []
        return [
            Peer(c.node, c.addresses, c.port, c.txt.term)
            for c in self.discovery.coordinators()
            if c.app == app_id and c.node != self.host.node_id
        ]

    def _claims(self) -> list[Claim]:
        """Every app's fair-share claim from the ``_bjg-coord`` records seen (ours included;
        the highest term's record when an app has two)."""
        if self.discovery is None:
            return []
        best: dict[str, CoordTxt] = {}
        for c in self.discovery.coordinators():
            if c.app not in best or c.txt.term >= best[c.app].term:
                best[c.app] = c.txt
        return [Claim(t.app, t.workers, t.demand, t.weight) for t in best.values()]

    def _coord_txt(self, app: AppCoordinator) -> CoordTxt:
        claim = app.claim()
        self._published_claims[app.app_id] = (app.term, claim.held, claim.demand)
        return CoordTxt(
            grid=self.key.grid_id,
            node=self.host.node_id,
            host=self.host.hostname,
            app=app.app_id,
            name=app.spec.name,
            user=app.user,
            term=app.term,
            workers=claim.held,
            demand=claim.demand,
            weight=app.spec.weight,
        )

    async def _publish_claims(self) -> None:
        """Update the coordinator records whose fair-share claim changed (a housekeeping
        tick apart at most, so a busy app does not announce every task)."""
        d = self.discovery
        if d is None:
            return
        for app in list(self.apps.values()):
            if app.app_id not in self._published_claims or not app.role.coordinating:
                continue
            claim = app.claim()
            if self._published_claims[app.app_id] != (app.term, claim.held, claim.demand):
                await d.publish_coordinator(self._coord_txt(app))
