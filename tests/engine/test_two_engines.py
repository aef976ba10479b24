"""A coordinator's ``AppEngine`` and a replica's ``ReplicaEngine`` linked through a fake
link: the stream, the acknowledgements, the coordinator's loss, the replica's claim, and the
takeover by a new ``AppEngine`` built from the replica's journal."""

from __future__ import annotations

from test_app_engine import APP, offer, result, spec

from bonjourgrid.control.messages import HeartbeatAck, JournalAck
from bonjourgrid.engine import replica_events as rv
from bonjourgrid.engine.app import AppEngine
from bonjourgrid.engine.app_events import (
    Ack,
    Action,
    Append,
    Feed,
    FromWorker,
    Launch,
    MembersChanged,
    OutputsStaged,
    Prepared,
    Recruit,
    Reserved,
    Seen,
    Tick,
)
from bonjourgrid.engine.replica import ReplicaEngine, Timing
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.quorum import Members, Position
from bonjourgrid.states.coordinator import CoordinatorRole, Role

TIMING = Timing(suspect_after=3.0, takeover_stagger=1.0, heartbeat_interval=0.5,
                ping_timeout=0.5, connect_timeout=1.0)  # fmt: skip


class FakeLink:
    """Carries the coordinator's actions to the replica ``r`` and its acks back."""

    def __init__(self, coord: AppEngine, replica: ReplicaEngine) -> None:
        self.coord, self.replica = coord, replica
        self.journal: list[je.Entry] = []
        self.written: list[je.Entry] = []
        """The coordinator's own journal (a feed starts with a snapshot of it)."""
        self.fed = False
        self.up = True
        self.acks: list[Ack] = []
        self.launched: dict[str, str] = {}

    def run(self, now: float, actions: list[Action]) -> None:
        queue = list(actions)
        while queue and self.up:
            a = queue.pop(0)
            if isinstance(a, Append):
                self.written.append(a.entry)
            sent = isinstance(a, (Append, MembersChanged)) and self.fed
            if (isinstance(a, Feed) and a.node == "r") or sent:
                self.fed = True
                self.journal = list(self.written)
                m = self.coord.members
                pos = Position(self.coord.term, len(self.journal), m.version)
                self.replica.handle(rv.Followed(self.coord.term, "c", pos, m))
                self.replica.handle(rv.CoordinatorHeard(now))
                ack = JournalAck(APP, self.coord.term, len(self.journal), True, m.version)
                queue += self.coord.handle(FromWorker(now, "r", ack))
            elif isinstance(a, Ack):
                self.acks.append(a)
            elif isinstance(a, Launch):
                self.launched[a.task] = a.worker


def test_a_result_acked_through_the_replica_survives_the_coordinators_loss() -> None:
    coord = AppEngine(app=APP, spec=spec(2, replicas=1), me="c", now=0.0)
    rep = ReplicaEngine(app=APP, me="r", timing=TIMING, now=0.0, coordinator="c", term=1)
    link = FakeLink(coord, rep)
    link.run(0.0, coord.handle(Seen((offer("r"), offer("w")))))
    link.run(0.0, coord.handle(Tick(0.0)))
    for n in ("r", "w"):
        link.run(0.0, coord.handle(Reserved(0.0, n, n, 1)))
        link.run(0.0, coord.handle(Prepared(0.0, n)))
    link.run(0.0, coord.handle(Tick(0.0)))
    link.run(0.5, coord.handle(Tick(0.5)))  # the set's first change is agreed: confirmed
    assert link.fed and set(link.launched) == {"t1", "t2"}
    assert coord.members == Members(2, ("r",)) == rep.members
    done, running = sorted(link.launched.items())
    link.run(1.0, coord.handle(FromWorker(1.0, done[1], result(done[0]))))
    link.run(1.0, coord.handle(OutputsStaged(1.0, done[0], 1)))
    assert [a.task for a in link.acks] == [done[0]]  # acked once the replica held it

    link.up = False  # the coordinator's machine is gone
    claim: list[rv.Action] = []
    t = 1.0
    while not claim and t < 30.0:
        t += 0.5
        todo = rep.handle(rv.Tick(t))
        while todo:
            a = todo.pop(0)
            if isinstance(a, rv.AskCoordinates):
                for p in a.peers:
                    todo += rep.handle(rv.PeerSilent(p))
            elif isinstance(a, rv.Claim):
                claim.append(a)
    assert claim, (rep.phase, rep.voter, rep.members, rep.last_heard)
    [won] = [a for a in claim if isinstance(a, rv.Claim)]
    assert won.term == 2 and t >= 1.0 + TIMING.suspect_after

    role = CoordinatorRole.restored(APP, Role.TAKING_OVER, won.term)
    new = AppEngine(app=APP, spec=spec(2, replicas=1), me="r", now=t, role=role,
                    entries=link.journal, members=rep.members)  # fmt: skip
    assert new.table.state(done[0]).value == "done"
    new.handle(Seen((offer(running[1], state="worker", app=APP),)))
    out = new.handle(Tick(t))
    assert [a.offer.node for a in out if isinstance(a, Recruit)] == [running[1]]
    new.handle(Reserved(t, running[1], running[1], 1))
    new.handle(Prepared(t, running[1]))
    ack = HeartbeatAck(APP, won.term, (f"{running[0]}#1",))
    assert not [a for a in new.handle(FromWorker(t, running[1], ack)) if isinstance(a, Append)]
    new.handle(Tick(t + 0.1))
    assert new.role.role is Role.RUNNING
    assert new.ledger.running == {(running[0], 1): (running[1], 1)}  # adopted, not re-run
