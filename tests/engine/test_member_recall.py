"""A replica-set member whose link was lost (its lease ran out behind a partition) is
reserved again once it is seen idle, even when the app wants no more workers; one that said
it holds nothing is not (it may have restarted and forgotten a vote).

Found by the simulation (seeds 3 and 19 at 1000 machines / 400 apps, 5 at 300 / 120): both
replicas of an app were cut off, let the app go, and the coordinator, with the workers it
wanted, never asked them back, so its open set change was never agreed and the app hung."""

from __future__ import annotations

from bonjourgrid.app.spec import AppSpec, TaskSpec
from bonjourgrid.engine.app import AppEngine
from bonjourgrid.engine.app_events import (
    LinkLost,
    MemberState,
    Prepared,
    Recruit,
    Reserved,
    Seen,
    Tick,
)
from bonjourgrid.engine.matchmaking import Offer
from bonjourgrid.faulttolerance.quorum import Members

APP = "a1"


def offer(node: str, state: str = "idle") -> Offer:
    return Offer(node, node, ("10.0.0.1",), 1, state, 1, 1, 1024, "linux", "x86_64",
                 ("embedded",))  # fmt: skip


def engine_with_members_lost() -> AppEngine:
    """One worker ``w`` (all the app wants), replicas ``a`` and ``b``, both links lost."""
    spec = AppSpec("demo", (TaskSpec("t1", ("true",)),), workers=1, replicas=2)
    e = AppEngine(app=APP, spec=spec, me="coord", now=0.0, members=Members(4, ("a", "b")))
    for n in ("w", "a", "b"):
        e.handle(Seen((offer(n),)))
        e.handle(Reserved(0.0, n, n, 1))
        e.handle(Prepared(0.0, n))
    e.handle(LinkLost(1.0, "a", "silent"))
    e.handle(LinkLost(1.0, "b", "silent"))
    return e


def recruited(e: AppEngine, now: float) -> set[str]:
    return {a.offer.node for a in e.handle(Tick(now)) if isinstance(a, Recruit)}


def test_a_lost_member_seen_idle_again_is_reserved_back() -> None:
    e = engine_with_members_lost()
    e.handle(Seen((offer("w", "worker"), offer("a"), offer("b"), offer("x"))))
    assert recruited(e, 10.0) == {"a", "b"}  # not x: the app wants no more workers


def test_a_member_that_holds_nothing_is_not_reserved_back() -> None:
    e = engine_with_members_lost()
    e.handle(MemberState(2.0, "a", 0, ""))  # restarted: it may have forgotten a vote
    e.handle(Seen((offer("w", "worker"), offer("a"), offer("b"))))
    assert "a" not in recruited(e, 10.0)
