"""One simulated machine: a volunteer, the apps it coordinates, the apps it is a replica of.

The node routes each message to the part it is for (by kind and app), owns its timers (a
crashed node's timers do nothing), and is replaced by a fresh node when it restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.sim.clock import Timer
from bonjourgrid.sim.messages import (
    AppEnded,
    AppEndedAck,
    CancelTask,
    Heartbeat,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    PreVote,
    PreVoteReply,
    Probe,
    ProbeAck,
    ProbeRequest,
    Release,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    Stale,
    SyncReply,
    SyncRequest,
    TaskResult,
    TermQuery,
)
from bonjourgrid.sim.volunteer_node import VolunteerSide

if TYPE_CHECKING:
    from bonjourgrid.sim.coordinator_node import CoordinatorSide
    from bonjourgrid.sim.replica import ReplicaSide
    from bonjourgrid.sim.world import World

_TO_VOLUNTEER = (Reserve, Heartbeat, StageApp, RunTask, CancelTask, ResultAck, Release)
_TO_COORDINATOR = (
    ReserveReply,
    StageAck,
    HeartbeatAck,
    TaskResult,
    Stale,
    JournalAck,
    AppEndedAck,
)
_TO_REPLICA = (JournalAppend, SyncRequest, SyncReply, AppEnded, PreVoteReply)


class SimNode:
    def __init__(self, world: World, offer: Offer) -> None:
        self.world = world
        self.id = offer.node
        self.offer = offer
        self.slots = offer.slots
        self.clock = world.clock
        self.checks = world.checks
        self.up = True
        self.volunteer = VolunteerSide(self)
        self.coords: dict[str, CoordinatorSide] = {}
        self.replicas: dict[str, ReplicaSide] = {}
        self._probes_answered: set[str] = set()
        world.net.attach(self.id, self.deliver)
        world.directory.advertise(offer, "idle")

    # --- services for the parts ----------------------------------------------------------------

    def later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` after ``delay`` unless this node has crashed by then."""
        return self.clock.call_later(delay, lambda: fn() if self.up else None)

    def send(self, dst: str, msg: object) -> None:
        self.world.net.send(self.id, dst, msg)

    def advertise(self, state: str) -> None:
        self.world.directory.advertise(self.offer, state)

    def left_app(self, app: str) -> None:
        """The volunteer is no longer reserved by ``app``: it is no longer its replica either."""
        r = self.replicas.get(app)
        if r is not None and not r.ended and not r.taking_over:
            r.stop()
            del self.replicas[app]

    def crash(self) -> None:
        self.up = False
        self.world.net.crash(self.id)

    # --- routing -------------------------------------------------------------------------------

    def deliver(self, src: str, msg: object) -> None:
        if not self.up:
            return
        app: str = getattr(msg, "app", "")
        if isinstance(msg, _TO_VOLUNTEER):
            if isinstance(msg, Heartbeat) and (r := self.replicas.get(app)) is not None:
                r.heard(src, msg.term)
            self.volunteer.on_message(src, msg)
        elif isinstance(msg, _TO_COORDINATOR):
            c = self.coords.get(app)
            if c is not None:
                c.on_message(src, msg)
        elif isinstance(msg, _TO_REPLICA):
            self._to_replica(src, app, msg)
        elif isinstance(msg, TermQuery):
            c = self.coords.get(app)
            if c is not None and c.role.coordinating and c.term > msg.term:
                self.send(src, Stale(app, c.term, True))
            elif c is None and app not in self.replicas and self.volunteer.app != app:
                self.send(src, Stale(app, 0, False))  # holds nothing of it: cannot claim it
        elif isinstance(msg, ProbeRequest):
            self._probe(src, msg)
        elif isinstance(msg, Probe):
            if (c := self.coords.get(app)) is not None and c.role.coordinating:
                self.send(src, ProbeAck(app))
        elif isinstance(msg, ProbeAck):
            self._probes_answered.add(app)
        elif isinstance(msg, PreVote):
            self.send(src, PreVoteReply(app, msg.term, self._lost_coordinator(app)))

    def _probe(self, src: str, m: ProbeRequest) -> None:
        """Probe ``m.coordinator`` for a replica (SWIM's indirect probe); grant if silent."""
        self._probes_answered.discard(m.app)
        self.send(m.coordinator, Probe(m.app))

        def verdict() -> None:
            silent = m.app not in self._probes_answered
            self.send(src, PreVoteReply(m.app, m.term, silent))

        self.later(self.world.config.suspect_after / 2, verdict)

    def _lost_coordinator(self, app: str) -> bool:
        """Whether this machine, too, has not heard from ``app``'s coordinator lately."""
        quiet = self.world.config.suspect_after / 2
        if (c := self.coords.get(app)) is not None and c.role.coordinating:
            return False
        if (r := self.replicas.get(app)) is not None and not r.taking_over:
            return self.clock.now - r.last_heard > quiet
        if self.volunteer.app == app:
            return self.clock.now - self.volunteer.heard_at > quiet
        return True

    def _to_replica(self, src: str, app: str, msg: object) -> None:
        from bonjourgrid.sim.replica import ReplicaSide

        r = self.replicas.get(app)
        if r is None and isinstance(msg, JournalAppend):
            if self.volunteer.app != app or app in self.coords:
                self.send(src, Stale(app, 0, False))  # not ours to keep: pick another replica
                return
            r = ReplicaSide(self, msg)
            self.replicas[app] = r
        if r is not None:
            r.on_message(src, msg)
        elif isinstance(msg, AppEnded):
            self.send(src, AppEndedAck(app, msg.term))
