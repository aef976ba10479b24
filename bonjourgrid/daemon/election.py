"""A replica watching its coordinator, and the election that follows its loss: the daemon's
shell around the replica engine (bonjourgrid/engine/replica.py, which the simulation runs
too). Every rule lives in the engine — suspicion, the ask-first step, the one waiting rule
(``suspect_after + rank * takeover_stagger``, no ``suspect_after`` after a goodbye seen here),
the ballot and the vote; this file only feeds it and carries out its actions.

What the shell feeds (on every housekeeping tick and mDNS change, and before every vote):

* the mDNS view: the app's ``_bjg-coord`` records (``CoordinatorRecordSeen``/``Gone``);
* the volunteer agent: whether it serves the app, whether its channel to the coordinator is
  up, and when it last heard from it (``ServingChanged``, ``LinkClosed``/``LinkOpened``,
  ``CoordinatorHeard``);
* the copy: the journal's position and the replica set after the stream changed them
  (``Followed``; the stream itself is followed by ``AppCoordinator.follow_append``);
* the answers of ``query_app`` and ``ask`` (``AppStateAnswer``, ``VoteAnswer``, ``PeerSilent``).

What it carries out: ``AskCoordinates`` and ``RequestVotes`` (one background task each,
over fresh authenticated channels), ``PersistVote`` (the app's election state, saved before
any answer leaves), ``Claim`` (take over and start coordinating), ``Forget`` (drop the copy),
``SendVote`` (the answer to a candidate) and ``Note`` (a log line).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING

from bonjourgrid.config import Config
from bonjourgrid.control.messages import Vote, VoteRequest
from bonjourgrid.coordinator.peers import Identity, Peer, ask, query_app
from bonjourgrid.engine import (
    Action,
    AppStateAnswer,
    AskCoordinates,
    Claim,
    CoordinatorHeard,
    CoordinatorRecordGone,
    CoordinatorRecordSeen,
    Event,
    Followed,
    Forget,
    LinkClosed,
    LinkOpened,
    Note,
    PeerSilent,
    PersistVote,
    ReplicaEngine,
    RequestVotes,
    SendVote,
    ServingChanged,
    Tick,
    Timing,
    VoteAnswer,
    VoteRequested,
)
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
        self._timing = Timing.of(config)
        self._engines: dict[str, tuple[AppCoordinator, ReplicaEngine]] = {}
        """App -> the copy an engine was made for, and the engine (a new snapshot makes a new
        copy object, and so a new engine)."""
        self._tasks: set[asyncio.Task[None]] = set()

    def check(self, standbys: list[AppCoordinator]) -> None:
        """Called on every housekeeping tick and mDNS change: feed what changed, then time."""
        now = time.monotonic()
        live = {a.app_id for a in standbys}
        for app_id in [a for a in self._engines if a not in live]:
            del self._engines[app_id]
        for app in standbys:
            if app.role.role is not Role.STANDBY:
                continue
            engine = self._engine(app)
            if not engine.done:
                self._feed(app, engine, Tick(now))

    def vote(self, req: VoteRequest, app: AppCoordinator | None) -> Vote:
        """Answer a candidate (the engine's vote); a grant is persisted before it leaves."""
        if app is None:
            return Vote(req.app, 0, False, "this machine holds nothing of the app")
        if app.role.role is not Role.STANDBY:
            why = "I coordinate it" if app.role.coordinating else f"it is {app.role.role.value}"
            return Vote(req.app, app.term, False, why)
        engine = self._engine(app)
        for vote in self._feed(app, engine, VoteRequested(time.monotonic(), req)):
            return vote
        return Vote(req.app, app.term, False, "no answer")  # the engine always answers

    # --- feeding the engine ----------------------------------------------------------------

    def _engine(self, app: AppCoordinator) -> ReplicaEngine:
        held = self._engines.get(app.app_id)
        if held is not None and held[0] is app:
            return held[1]
        serving = self.agent.app == app.app_id
        engine = ReplicaEngine(
            app=app.app_id,
            me=self.me.node,
            timing=self._timing,
            now=self.agent.last_heard if serving else time.monotonic(),
            coordinator=app.coordinator[0],
            voter=app.voter,
            position=app.position(),
            members=app.members,
            term=app.term,
        )
        if held is not None and held[1].coordinator == engine.coordinator:
            for node in held[1].records:  # the same coordinator: its record was seen here
                engine.handle(CoordinatorRecordSeen(node))
        self._engines[app.app_id] = (app, engine)
        return engine

    def _observe(self, app: AppCoordinator, engine: ReplicaEngine) -> list[Event]:
        """What changed since the engine last heard: mDNS records, the agent, the copy."""
        out: list[Event] = []
        d = self._discovery()
        if d is not None:
            now = {c.node for c in d.coordinators() if c.app == app.app_id}
            out += [CoordinatorRecordSeen(n) for n in sorted(now - engine.records)]
            out += [CoordinatorRecordGone(n) for n in sorted(engine.records - now)]
        serving = self.agent.app == app.app_id
        if serving != engine.serving:
            out.append(ServingChanged(serving))
        linked = self.agent.linked
        if linked != engine.linked:
            out.append(LinkOpened() if linked else LinkClosed())
        if serving and self.agent.last_heard > engine.last_heard:
            out.append(CoordinatorHeard(self.agent.last_heard))
        pos, members = app.position(), app.members
        if (pos, members) != (engine.position, engine.members):
            out.append(Followed(pos.term, app.coordinator[0], pos, members))
        return out

    def _current(self, app: AppCoordinator, engine: ReplicaEngine) -> bool:
        """Whether ``engine`` still speaks for ``app`` (not replaced, still standing by)."""
        held = self._engines.get(app.app_id)
        return held is not None and held[1] is engine and app.role.role is Role.STANDBY

    def _feed(self, app: AppCoordinator, engine: ReplicaEngine, event: Event) -> list[Vote]:
        """Bring the engine up to date, feed ``event``, carry out the actions; the votes to
        send back (for ``VoteRequested``)."""
        votes: list[Vote] = []
        for e in [*self._observe(app, engine), event]:
            for action in engine.handle(e):
                self._do(app, engine, action, votes)
        return votes

    def _do(self, app: AppCoordinator, engine: ReplicaEngine, a: Action, votes: list[Vote]) -> None:
        if isinstance(a, SendVote):
            votes.append(a.vote)
        elif isinstance(a, Note):
            (log.warning if a.warning else log.info)("%s", a.text)
        elif isinstance(a, PersistVote):
            app.persist_vote(a.voter, a.term)
        elif isinstance(a, AskCoordinates):
            self._spawn(self._ask_coordinates(app, engine, a), f"ask {app.app_id}")
        elif isinstance(a, RequestVotes):
            self._spawn(self._request_votes(app, engine, a), f"ballot {app.app_id}")
        elif isinstance(a, Claim):
            if app.role.role is Role.STANDBY:
                app.take_over(a.term)
                self._promote(app)
        elif isinstance(a, Forget):
            log.info("%s", a.reason)
            self._engines.pop(app.app_id, None)
            self._forget(app)

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answers(self, app: AppCoordinator, engine: ReplicaEngine, events: Sequence[Event]) -> None:
        if not self._current(app, engine):
            return
        votes: list[Vote] = []
        for event in events:
            for e in [*self._observe(app, engine), event]:
                for action in engine.handle(e):
                    if self._current(app, engine):
                        self._do(app, engine, action, votes)

    # --- carrying out the asks ---------------------------------------------------------------

    async def _ask_coordinates(
        self, app: AppCoordinator, engine: ReplicaEngine, a: AskCoordinates
    ) -> None:
        peers = self._addresses(app, a.peers)
        found = [p for p in peers if p is not None]
        states = await asyncio.gather(
            *(query_app(p, app.app_id, self.me, self.config.ping_timeout) for p in found)
        )
        replies = dict(zip([p.node for p in found], states, strict=True))
        events: list[Event] = []
        for node in a.peers:
            st = replies.get(node)
            if st is None:
                events.append(PeerSilent(node))
            else:
                events.append(AppStateAnswer(node, st.term, st.coordinating, st.complete))
        self._answers(app, engine, events)

    async def _request_votes(
        self, app: AppCoordinator, engine: ReplicaEngine, a: RequestVotes
    ) -> None:
        peers = self._addresses(app, a.peers)
        found = [p for p in peers if p is not None]
        replies = await asyncio.gather(
            *(ask(p, a.request, self.me, self.config.ping_timeout) for p in found)
        )
        got = dict(zip([p.node for p in found], replies, strict=True))
        events: list[Event] = []
        for node in a.peers:
            v = got.get(node)
            if isinstance(v, Vote):
                events.append(VoteAnswer(node, v.term, v.granted, v.reason))
            else:
                events.append(PeerSilent(node))
        self._answers(app, engine, events)

    def _addresses(self, app: AppCoordinator, nodes: Sequence[str]) -> list[Peer | None]:
        """Where to reach each node (from mDNS: a coordinator record of the app first, then
        the machine's record); None where this daemon knows no address."""
        d = self._discovery()
        if d is None:
            return [None for _ in nodes]
        coords = {c.node: c for c in d.coordinators() if c.app == app.app_id}
        machines = {m.node: m for m in d.machines()}
        out: list[Peer | None] = []
        for node in nodes:
            c, m = coords.get(node), machines.get(node)
            if c is not None:
                out.append(Peer(c.node, c.addresses, c.port, c.txt.term))
            elif m is not None:
                out.append(Peer(node, m.addresses, m.port, 0))
            else:
                out.append(None)
        return out
