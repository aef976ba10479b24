"""A replica watching its coordinator, and the election that follows its loss.

Failure detection has two sources (DESIGN.md: mDNS is for presence, heartbeats for liveness):

* the control channel: the coordinator heartbeats every worker, replicas included; silence
  for ``suspect_after``, or the channel closing, makes the replica suspect it;
* mDNS publish/subscribe: the coordinator's ``_bjg-coord`` record leaving (a goodbye) with no
  "app ended" message before it is a loss, seen at once. A goodbye is an explicit "I am gone",
  so it needs no ``suspect_after`` of silence: the candidate and its voters, each seeing the
  goodbye in its own mDNS view, go to the election at once (rank stagger and terms still
  apply, and the coordinator is still asked first).

A suspicion is checked before anyone acts: the replica asks the coordinator over the
authenticated channel (``AppQuery``); an answer "I coordinate it" ends the matter. Otherwise
the replica of election rank ``r`` waits ``r * takeover_stagger``, asks the better-ranked
replicas and any other coordinator record of the app, and if nobody coordinates it runs an
election (faulttolerance/quorum.py): it votes for itself in the next term and asks every
other member of the replica set it knows (``VoteRequest``); it takes over only with ``E``
votes of every set in force — "place anyway, run if elected". A voter grants one vote per
term, to a journal at least as advanced as its own, and only if it, too, has not heard from
the coordinator for ``suspect_after`` (``vote``); having granted, it refuses the old term's
stream, which makes the old coordinator step down. Workers follow the highest term they have
seen, and a coordinator that learns of a higher term steps down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bonjourgrid.config import Config
from bonjourgrid.control.messages import Vote, VoteRequest
from bonjourgrid.coordinator.peers import Identity, Peer, ask, query_app
from bonjourgrid.faulttolerance.quorum import Position
from bonjourgrid.states.coordinator import Role, TermSeen

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.daemon.volunteer_agent import VolunteerAgent
    from bonjourgrid.discovery import Discovery

log = logging.getLogger(__name__)

_GOODBYE_LOOK = 0.1
"""While waiting out a suspicion, how often the candidate looks for the coordinator's goodbye."""


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
        self._coord_seen: set[tuple[str, str]] = set()
        """(app, coordinator node) whose coordinator record this daemon has seen."""
        self._last_try: dict[str, float] = {}
        self._campaigning: set[str] = set()
        """Apps this daemon is asking votes for right now (its own vote is taken)."""
        self._above: dict[str, int] = {}
        """App -> the highest term a voter refused us with (the next candidacy goes past)."""

    def check(self, standbys: list[AppCoordinator]) -> None:
        """Called on every housekeeping tick and mDNS change: start an election where due."""
        now = time.monotonic()
        for app in standbys:
            if app.role.role is not Role.STANDBY or app.app_id in self._electing:
                continue
            reason = self._suspicion(app, now)
            if reason is None:
                continue
            if now - self._last_try.get(app.app_id, 0.0) < 2 * self.config.heartbeat_interval:
                continue
            self._last_try[app.app_id] = now
            self._electing.add(app.app_id)
            task = asyncio.create_task(self._elect(app, reason), name=f"elect {app.app_id}")
            task.add_done_callback(self._done(app.app_id))

    def _done(self, app_id: str) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._electing.discard(app_id)

    def said_goodbye(self, app: AppCoordinator) -> bool:
        """Whether the app's coordinator record, once seen here, has left the mDNS view."""
        node = app.coordinator[0]
        d = self._discovery()
        if d is None:
            return False
        if any(c.app == app.app_id and c.node == node for c in d.coordinators()):
            self._coord_seen.add((app.app_id, node))
            return False
        return (app.app_id, node) in self._coord_seen

    def _suspicion(self, app: AppCoordinator, now: float) -> str | None:
        if self.said_goodbye(app):
            return "the coordinator's record said goodbye"
        if self.agent.app != app.app_id:
            return "this machine no longer serves the app"
        if not self.agent.linked:
            return "the channel to the coordinator closed"
        if now - self.agent.last_heard > self.config.suspect_after:
            return f"the coordinator was silent for more than {self.config.suspect_after:g} s"
        return None

    async def _elect(self, app: AppCoordinator, reason: str) -> None:
        log.info("app %s: coordinator %s suspected: %s", app.app_id, app.coordinator[1], reason)
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
        # Voters grant only after suspect_after of silence of their own: ask no earlier, and
        # let the better-ranked members ask first (takeover_stagger per rank).
        # After a goodbye, no silence is needed (it may arrive while we wait: look again).
        heard = self.agent.last_heard
        serving = self.agent.app == app.app_id
        while True:
            silent = time.monotonic() - heard if serving else float("inf")
            wait = 0.0 if self.said_goodbye(app) else self.config.suspect_after
            need = wait + rank * self.config.takeover_stagger
            if silent >= need:
                break
            await asyncio.sleep(min(_GOODBYE_LOOK, need - silent))
            if serving and self.agent.last_heard > heard:
                return  # the coordinator spoke meanwhile
        if rank:
            if app.role.role is not Role.STANDBY:
                return
            if await self._someone_coordinates(app, self._peers(app, better_only=True)):
                return
        if app.role.role is not Role.STANDBY:
            return
        term = await self._ballot(app)
        if term and app.role.role is Role.STANDBY:
            app.take_over(term)
            self._promote(app)

    async def _ballot(self, app: AppCoordinator) -> int:
        """Ask the members for their votes in the next term: the term won, or 0."""
        members = app.members
        if self.me.node not in members.everyone():
            log.info("app %s: not a member of its replica set; no candidacy", app.app_id)
            return 0
        app.voter, term = app.voter.candidacy(self._above.get(app.app_id, 0))
        app.save_election()
        heard = self.agent.last_heard
        pos = app.position()
        req = VoteRequest(app.app_id, term, self.me.node, pos.seq, pos.term, pos.members)
        peers = self._members(app)
        self._campaigning.add(app.app_id)
        try:
            replies = await asyncio.gather(
                *(ask(p, req, self.me, self.config.ping_timeout) for p in peers)
            )
        finally:
            self._campaigning.discard(app.app_id)
        grants = {self.me.node}
        why: list[str] = []
        for peer, reply in zip(peers, replies, strict=True):
            if isinstance(reply, Vote) and reply.granted and reply.term == term:
                grants.add(peer.node)
                continue
            if isinstance(reply, Vote) and reply.term >= term:
                self._above[app.app_id] = max(self._above.get(app.app_id, 0), reply.term)
            why.append(f"{peer.node}: {reply.reason if isinstance(reply, Vote) else 'silent'}")
        if self.agent.app == app.app_id and self.agent.last_heard > heard:
            log.info("app %s: heard from the coordinator during the election", app.app_id)
            return 0
        if not members.won(grants):
            log.info(
                "app %s: no quorum for term %d (%d of %s): %s",
                app.app_id,
                term,
                len(grants),
                "/".join(str(len(s)) for s in members.sets()),
                "; ".join(why) or "no other member",
            )
            return 0
        log.warning("app %s: elected for term %d by %s", app.app_id, term, sorted(grants))
        return term

    def _members(self, app: AppCoordinator) -> list[Peer]:
        """Where to reach the other members of the app's replica set (from mDNS)."""
        d = self._discovery()
        machines = {m.node: m for m in d.machines()} if d is not None else {}
        out = []
        for node in app.members.everyone():
            m = machines.get(node)
            if node != self.me.node and m is not None:
                out.append(Peer(node, m.addresses, m.port, 0))
        return out

    def vote(self, req: VoteRequest, app: AppCoordinator | None) -> Vote:
        """Answer a candidate (faulttolerance/quorum.py ``Voter.vote``); a grant is persisted
        before the answer leaves."""
        if app is None:
            return Vote(req.app, 0, False, "this machine holds nothing of the app")
        if app.role.role is not Role.STANDBY:
            why = "I coordinate it" if app.role.coordinating else f"it is {app.role.role.value}"
            return Vote(req.app, app.term, False, why)
        serving = self.agent.app == req.app
        silent = time.monotonic() - self.agent.last_heard if serving else float("inf")
        if self.said_goodbye(app):
            silent = float("inf")  # the coordinator said it is gone: no silence to wait for
        voter, why = app.voter.vote(
            term=req.term,
            candidate=req.candidate,
            theirs=Position(req.last_term, req.seq, req.members),
            mine=app.position(),
            silent_for=silent,
            suspect_after=self.config.suspect_after,
            campaigning=req.app in self._campaigning,
        )
        if not why:
            app.voter = voter
            app.role.handle(TermSeen(req.term))
            app.save_election()
            log.info("app %s: voted for %s in term %d", req.app, req.candidate, req.term)
        return Vote(req.app, max(app.term, app.voter.latest()), not why, why)

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
