"""What the daemon tells the LAN and reads back from it: its volunteer record and its apps'
coordinator records (with their fair-share claims) out; the volunteers it may recruit, rival
coordinators and every app's claim in (mDNS, or the static ``--local`` list)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bonjourgrid.coordinator.fairshare import Claim
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Peer
from bonjourgrid.daemon.status import ping
from bonjourgrid.discovery import CoordTxt, NodeTxt
from bonjourgrid.policy import PolicyState

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.daemon.node import NodeDaemon

_NOT_OFFERED = (PolicyState.BUSY.value, PolicyState.PAUSED.value)


class Advertising:
    """The daemon's records out, offers and claims in. It reads the daemon's state (its
    host, discovery, volunteer agent, apps) and owns what it last published."""

    def __init__(self, node: NodeDaemon) -> None:
        self.node = node
        self.static_offers: list[Offer] = []
        """The ``--local`` workers' offers, as they last answered a ping."""
        self.published_claims: dict[str, tuple[int, int, int]] = {}
        """App -> (term, workers, demand) last published in its ``_bjg-coord`` record."""

    async def advertise(self) -> None:
        node = self.node
        node.kick()  # the volunteer's state changed: housekeeping re-times its tick
        if node.discovery is None or not node.volunteer:
            return
        h = node.host
        await node.discovery.set_volunteer(
            NodeTxt(
                grid=node.key.grid_id,
                node=h.node_id,
                host=h.hostname,
                cpus=h.cpus,
                slots=h.slots,
                mem_mb=h.mem_mb,
                os=h.os,
                arch=h.arch,
                backends=h.backends,
                policy=self._policy_value(),
                app=node.agent.app,
                coordinator=node.agent.coordinator,
                attributes=node.attributes,
                isolation=node.agent.isolation.mode,
                isolation_reason=node.agent.isolation.reason,
            )
        )

    def _policy_value(self) -> str:
        """The TXT ``p``: ``ok``, ``busy`` (the owner is at it) or ``paused`` (bjgrid pause)."""
        if not self.node.agent.owner_busy:
            return PolicyState.OK.value
        driver = self.node.policy
        paused = driver is not None and driver.state is PolicyState.PAUSED
        return PolicyState.PAUSED.value if paused else PolicyState.BUSY.value

    def offers(self) -> list[Offer]:
        """Volunteers a coordinator here may recruit: from mDNS, or the static list."""
        discovery = self.node.discovery
        if discovery is None:
            return list(self.static_offers)
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
            for m in discovery.machines()
        ]

    async def refresh_static(self) -> None:
        """``--local`` workers have no mDNS: learn their state by asking them directly."""
        node = self.node
        pongs = await asyncio.gather(
            *(
                ping(a, p, node.key, node.me.node_key, node.config.ping_timeout)
                for a, p in node.static_peers
            )
        )
        h = node.host
        self.static_offers = [
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
            for (addr, port), pong in zip(node.static_peers, pongs, strict=True)
            if pong is not None
        ]

    def rivals(self, app_id: str) -> list[Peer]:
        """Other nodes' coordinator records for ``app_id`` (with the term each claims)."""
        discovery = self.node.discovery
        if discovery is None:
            return []
        return [
            Peer(c.node, c.addresses, c.port, c.txt.term)
            for c in discovery.coordinators()
            if c.app == app_id and c.node != self.node.host.node_id
        ]

    def claims(self) -> list[Claim]:
        """Every app's fair-share claim from the ``_bjg-coord`` records seen (ours included;
        the highest term's record when an app has two)."""
        discovery = self.node.discovery
        if discovery is None:
            return []
        best: dict[str, CoordTxt] = {}
        for c in discovery.coordinators():
            if c.app not in best or c.txt.term >= best[c.app].term:
                best[c.app] = c.txt
        return [Claim(t.app, t.workers, t.demand, t.weight) for t in best.values()]

    def coord_txt(self, app: AppCoordinator) -> CoordTxt:
        """``app``'s coordinator record as published now (its claim remembered)."""
        claim = app.claim()
        self.published_claims[app.app_id] = (app.term, claim.held, claim.demand)
        host = self.node.host
        return CoordTxt(
            grid=self.node.key.grid_id,
            node=host.node_id,
            host=host.hostname,
            app=app.app_id,
            name=app.spec.name,
            user=app.user,
            term=app.term,
            workers=claim.held,
            demand=claim.demand,
            weight=app.spec.weight,
        )

    async def publish_claims(self) -> None:
        """Update the coordinator records whose fair-share claim changed (a housekeeping
        tick apart at most, so a busy app does not announce every task)."""
        d = self.node.discovery
        if d is None:
            return
        for app in list(self.node.apps.values()):
            if app.app_id not in self.published_claims or not app.role.coordinating:
                continue
            claim = app.claim()
            if self.published_claims[app.app_id] != (app.term, claim.held, claim.demand):
                await d.publish_coordinator(self.coord_txt(app))
