"""A replica watching its coordinator, and the election that follows its loss.

Failure detection has two sources (DESIGN.md: mDNS is for presence, heartbeats for liveness):

* the control channel: the coordinator heartbeats every worker, replicas included; silence
  for ``suspect_after``, or the channel closing, makes the replica suspect it;
* mDNS publish/subscribe: the coordinator's ``_bjg-coord`` record leaving (a goodbye) with no
  "app ended" message before it is a loss, seen at once.

A suspicion is checked before anyone acts: the replica asks the coordinator over the
authenticated channel (``AppQuery``); an answer "I coordinate it" ends the matter. Otherwise
the replica of election rank ``r`` waits ``r * takeover_stagger``, asks the better-ranked
replicas and any other coordinator record of the app, and claims ``term + 1`` only if nobody
coordinates the app — "place anyway, run if elected". Terms, not timing, keep two claimants
apart: workers follow the highest term they have seen, and a coordinator that learns of a
higher term (or of the same term held by a smaller node id) steps down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bonjourgrid.config import Config
from bonjourgrid.coordinator.app_coordinator import Identity, Peer, query_app
from bonjourgrid.states.coordinator import Role

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.daemon.volunteer_agent import VolunteerAgent
    from bonjourgrid.discovery import Discovery

log = logging.getLogger(__name__)


class Election:
    def __init__(
        self,
        *,
        me: Identity,
        config: Config,
        agent: VolunteerAgent,
        discovery: Callable[[], Discovery | None],
        promote: Callable[[AppCoordinator], None],
        forget: Callable[[AppCoordinator], None],
    ) -> None:
        self.me = me
        self.config = config
        self.agent = agent
        self._discovery = discovery
        self._promote = promote
        self._forget = forget
        self._electing: set[str] = set()
        self._coord_seen: dict[str, bool] = {}
        self._last_try: dict[str, float] = {}

    def check(self, standbys: list[AppCoordinator]) -> None:
        """Called on every housekeeping tick and mDNS change: start an election where due."""
        now = time.monotonic()
        for app in standbys:
            if app.role.role is not Role.STANDBY or app.app_id in self._electing:
                continue
            reason = self._suspicion(app, now)
            if reason is None:
                continue
            if now - self._last_try.get(app.app_id, 0.0) < self.config.suspect_after:
                continue
            self._last_try[app.app_id] = now
            self._electing.add(app.app_id)
            task = asyncio.create_task(self._elect(app, reason), name=f"elect {app.app_id}")
            task.add_done_callback(self._done(app.app_id))

    def _done(self, app_id: str) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._electing.discard(app_id)

    def _suspicion(self, app: AppCoordinator, now: float) -> str | None:
        node = app.coordinator[0]
        d = self._discovery()
        if d is not None:
            present = any(c.app == app.app_id and c.node == node for c in d.coordinators())
            if present:
                self._coord_seen[app.app_id] = True
            elif self._coord_seen.get(app.app_id):
                return "the coordinator's record said goodbye"
        if self.agent.app != app.app_id:
            return "this machine no longer serves the app"
        if not self.agent.linked:
            return "the channel to the coordinator closed"
        if now - self.agent.last_heard > self.config.suspect_after:
            return f"the coordinator was silent for more than {self.config.suspect_after:g} s"
        return None

    async def _elect(self, app: AppCoordinator, reason: str) -> None:
        log.warning("app %s: coordinator %s suspected: %s", app.app_id, app.coordinator[1], reason)
        verdict = await self._someone_coordinates(app, self._peers(app, better_only=False))
        if verdict == "ended":
            log.info("app %s ended elsewhere; this replica's copy is dropped", app.app_id)
            self._forget(app)
            return
        if verdict:
            if self.agent.app != app.app_id:
                log.info("app %s: coordinated elsewhere; this copy is dropped", app.app_id)
                self._forget(app)
            return
        ranks = app.replica_ranks
        rank = ranks.index(self.me.node) if self.me.node in ranks else len(ranks)
        if rank:
            await asyncio.sleep(rank * self.config.takeover_stagger)
            if app.role.role is not Role.STANDBY:
                return
            if await self._someone_coordinates(app, self._peers(app, better_only=True)):
                return
        if app.role.role is not Role.STANDBY:
            return
        app.take_over()
        self._promote(app)

    def _peers(self, app: AppCoordinator, *, better_only: bool) -> list[Peer]:
        """Who might coordinate the app: its coordinator, other coordinator records of it,
        and the replicas ranked before this one."""
        d = self._discovery()
        if d is None:
            return []
        machines = {m.node: m for m in d.machines()}
        peers: dict[str, Peer] = {}
        for c in d.coordinators():
            if c.app == app.app_id and c.node != self.me.node:
                peers[c.node] = Peer(c.node, c.addresses, c.port, c.txt.term)
        wanted = list(app.replica_ranks)
        if self.me.node in wanted:
            wanted = wanted[: wanted.index(self.me.node)]
        if not better_only:
            wanted.append(app.coordinator[0])
        for node in wanted:
            m = machines.get(node)
            if m is not None and node not in peers and node != self.me.node:
                peers[node] = Peer(node, m.addresses, m.port, 0)
        return list(peers.values())

    async def _someone_coordinates(self, app: AppCoordinator, peers: list[Peer]) -> str:
        """'coordinated' if a peer coordinates the app with our term or higher, 'ended' if
        a peer holds it ended and whole, '' if nobody answers for it."""
        if not peers:
            return ""
        states = await asyncio.gather(
            *(query_app(p, app.app_id, self.me, self.config.ping_timeout) for p in peers)
        )
        if any(st is not None and st.complete for st in states):
            return "ended"
        for peer, st in zip(peers, states, strict=True):
            if st is not None and st.coordinating and st.term >= app.term:
                log.info("app %s: %s coordinates it with term %d", app.app_id, peer.node, st.term)
                return "coordinated"
        return ""
