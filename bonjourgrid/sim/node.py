"""One simulated machine: a volunteer, the apps it coordinates, the apps it is a replica of.

The node routes each message to the part it is for (by kind and app), owns its timers (a
crashed node's timers do nothing), and is replaced by a fresh node when it restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bonjourgrid.control.messages import (
    AppEnded,
    AppQuery,
    AppState,
    CancelTask,
    Fenced,
    Heartbeat,
    HeartbeatAck,
    JournalAck,
    JournalAppend,
    Release,
    ReplicaOpen,
    Replicas,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
    Vote,
    VoteRequest,
)
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.faulttolerance.quorum import Voter
from bonjourgrid.sim.clock import Timer
from bonjourgrid.sim.volunteer_node import VolunteerSide
from bonjourgrid.states.coordinator import Role

if TYPE_CHECKING:
    from bonjourgrid.sim.coordinator import CoordinatorSide
    from bonjourgrid.sim.replica import ReplicaSide
    from bonjourgrid.sim.resume import Resume
    from bonjourgrid.sim.world import World

_TO_VOLUNTEER = (Reserve, Heartbeat, StageApp, RunTask, CancelTask, ResultAck, Release)
_TO_COORDINATOR = (ReserveReply, StageAck, HeartbeatAck, TaskResult, Fenced, JournalAck)
_TO_REPLICA = (ReplicaOpen, JournalAppend, Replicas, AppEnded, Vote)


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
        """The app's coordinator here (sim/coordinator.py: the product's ``AppEngine``)."""
        self.replicas: dict[str, ReplicaSide] = {}
        self.known: dict[str, Voter] = {}
        """Apps this machine held (as coordinator or replica) and let go, with its election
        state: it is not "empty" for them (it may have voted), as a restarted machine is (the
        product keeps an ended app's copy for ``results_keep``)."""
        self.complete: set[str] = set()
        """Of ``known``, the apps that ended here (its coordinator ended them, or its replica
        heard the end): the daemon keeps their results and answers ``complete``."""
        self.durable: set[str] = set()
        """Of ``known``, the apps whose election state is on disk (ended here as their
        coordinator): a restart keeps these; a let-go replica copy's state is not kept."""
        self.resuming: dict[str, Resume] = {}
        """Apps this restarted machine coordinated, resumed once it asked who holds them."""
        world.net.attach(self.id, self.deliver)
        world.directory.advertise(offer, "idle")

    # --- services for the parts ----------------------------------------------------------------

    def later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` after ``delay`` unless this node has crashed by then."""
        return self.clock.call_later(delay, lambda: fn() if self.up else None)

    def send(self, dst: str, msg: object) -> None:
        self.world.net.send(self.id, dst, msg)

    def advertise(self, state: str, app: str | None = None) -> None:
        self.world.directory.advertise(self.offer, state, app)

    def left_app(self, app: str) -> None:
        """The volunteer is no longer reserved by ``app``: it is no longer its replica either."""
        r = self.replicas.get(app)
        if r is not None and not r.ended:
            r.stop()
            del self.replicas[app]
            self.remember(app, r.voter)

    def remember(
        self, app: str, voter: Voter, *, durable: bool = False, complete: bool = False
    ) -> None:
        old = self.known.get(app)
        if old is None or (voter.term, voter.voted) >= (old.term, old.voted):
            self.known[app] = voter
        if durable:
            self.durable.add(app)
        if complete:
            self.complete.add(app)

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
        elif isinstance(msg, VoteRequest):
            c = self.coords.get(app)
            if c is not None and c.role.coordinating:
                self.send(src, Vote(app, c.term, False, "I coordinate it"))  # alive: no election
            elif (r := self.replicas.get(app)) is not None:
                r.on_message(src, msg)
            else:
                why = "this machine holds nothing of the app"
                self.send(src, Vote(app, self.app_state(app).term, False, why))
        elif isinstance(msg, AppQuery):
            self.send(src, self.app_state(app))
        elif isinstance(msg, AppState):  # the answer to an AppQuery (or to a stray message)
            if (c := self.coords.get(app)) is not None:
                c.on_message(src, msg)
            elif (r := self.replicas.get(app)) is not None:
                r.on_message(src, msg)
            elif (resume := self.resuming.get(app)) is not None:
                resume.on_answer(msg)

    def app_state(self, app: str) -> AppState:
        """The answer to an ``AppQuery`` (what the daemon's ``_answer_query`` says): the
        coordinator's term and role, a replica's, the term of an app it let go, or role ""
        (term 0) when it holds nothing (a machine that restarted). Also the answer to a
        message for an app this machine does not serve (the product closes that link)."""
        c = self.coords.get(app)
        if c is not None:
            role = c.role
            return AppState(app, role.term, role.role.value, role.coordinating, False)
        if (r := self.replicas.get(app)) is not None:
            return r.state()
        if (resume := self.resuming.get(app)) is not None:
            return resume.state()
        if (v := self.known.get(app)) is not None:
            done = app in self.complete
            kept = Role.FINISHED if done else Role.STEPPED_DOWN
            return AppState(app, v.term, kept.value, False, done)
        return AppState(app, 0, "", False, False)

    def _to_replica(self, src: str, app: str, msg: object) -> None:
        from bonjourgrid.sim.replica import ReplicaSide

        r = self.replicas.get(app)
        if r is None and isinstance(msg, ReplicaOpen):
            if (c := self.coords.get(app)) is not None:
                self.send(src, JournalAck(app, c.term, 0, False))  # a rival coordinator
                return
            if self.volunteer.app != app:
                self.send(src, self.app_state(app))  # not a replica of it
                return
            known = self.known.get(app)
            if known is not None and not known.accepts(msg.term, msg.coordinator):
                self.send(src, JournalAck(app, known.latest(), 0, False))
                return
            r = ReplicaSide(self, msg, self.known.pop(app, None))
            self.replicas[app] = r
        if r is not None:
            r.on_message(src, msg)
        elif isinstance(msg, (JournalAppend, Replicas)):
            if (c := self.coords.get(app)) is not None:
                self.send(src, JournalAck(app, c.term, 0, False))
            elif self.volunteer.app == app:
                known = self.known.get(app)
                if known is not None and not known.accepts(msg.term, src):
                    self.send(src, JournalAck(app, known.latest(), 0, False))  # fences it
                else:
                    self.send(src, JournalAck(app, msg.term, 0, False))  # no copy: a snapshot
            else:
                self.send(src, self.app_state(app))
