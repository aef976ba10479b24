"""The coordinator's replica set (engine/replica_set.py): a joint change whose every member
holds nothing can never be agreed; the set starts again from none instead of stalling.

Found by the simulation (seed 2 at 1000 machines / 400 apps): both replicas of an app
restarted while the coordinator was dropping one of them, and the app never finished."""

from __future__ import annotations

from bonjourgrid.engine.app_events import Feed, MembersChanged
from bonjourgrid.engine.policy import WriteQuorum
from bonjourgrid.engine.replica_set import ReplicaSet
from bonjourgrid.faulttolerance.quorum import Members


def joint() -> ReplicaSet:
    """Replicas ``a``, ``b``; ``b`` is being dropped (``(a, b) -> (a)``, not yet agreed)."""
    return ReplicaSet(2, "c", WriteQuorum(), Members(5, ("a",), ("a", "b")))


def test_a_joint_change_whose_every_member_holds_nothing_starts_the_set_again() -> None:
    rs = joint()
    rs.holds_nothing("a")
    rs.holds_nothing("b")
    out = rs.update(10.0, ["w1", "w2"], 1, settling=False)
    assert rs.members.version > 5
    assert rs.members.nodes == ("w1",) and rs.members.old == ()  # () -> (w1,), as at first
    assert Feed("w1") in out and any(isinstance(a, MembersChanged) for a in out)


def test_a_joint_change_waits_while_one_member_may_still_answer() -> None:
    rs = joint()
    rs.holds_nothing("b")  # counts for its own removal; a, the new set, has not answered
    rs.update(10.0, ["w1"], 1, settling=False)
    assert rs.members == Members(5, ("a",), ("a", "b"))
    rs.acked("a", 0, 5)
    rs.update(11.0, ["w1"], 1, settling=False)
    assert rs.members.version >= 6 and "b" not in rs.members.everyone()  # agreed: b is gone
