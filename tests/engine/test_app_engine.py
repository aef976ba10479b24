"""The app engine in h11's style: feed events, assert the actions. No I/O, no clock."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from bonjourgrid.app.spec import AppSpec, TaskSpec
from bonjourgrid.control.messages import (
    NO_FREE_SLOT,
    GiveBack,
    HeartbeatAck,
    JournalAck,
    TaskResult,
    failed_result,
)
from bonjourgrid.engine.app import AppEngine
from bonjourgrid.engine.app_events import (
    Ack,
    Action,
    Append,
    CloseLink,
    Ended,
    Feed,
    FromWorker,
    Launch,
    LinkLost,
    OutputsStaged,
    Prepare,
    Prepared,
    Recruit,
    Release,
    Reserved,
    Seen,
    StageOutputs,
    Tick,
)
from bonjourgrid.engine.matchmaking import Offer
from bonjourgrid.engine.placement import MiddlewarePlacement
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.quorum import Members
from bonjourgrid.states.coordinator import CoordinatorRole, Role

APP = "app1"


def spec(n: int = 2, replicas: int = 0) -> AppSpec:
    tasks = tuple(TaskSpec(f"t{i}", ("true",)) for i in range(1, n + 1))
    return AppSpec("demo", tasks, replicas=replicas)


def offer(node: str, slots: int = 1, state: str = "idle", app: str | None = None) -> Offer:
    return Offer(node, node, ("10.0.0.1",), 1, state, slots, slots, 1024, "linux", "x86_64",
                 ("embedded",), app=app)  # fmt: skip


def result(task: str, attempt: int = 1, code: int = 0) -> TaskResult:
    out = b"outputs"
    return TaskResult(APP, task, attempt, code, 1.5, "", out, hashlib.sha256(out).hexdigest())


def of(actions: Sequence[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def linked(e: AppEngine, nodes: Mapping[str, int], now: float = 0.0) -> list[Action]:
    """Recruit, reserve and prepare ``nodes`` (node -> slots); the actions from then on."""
    e.handle(Seen(tuple(offer(n, s) for n, s in nodes.items())))
    asked = of(e.handle(Tick(now)), Recruit)
    assert {a.offer.node for a in asked if isinstance(a, Recruit)} >= set(nodes)
    out: list[Action] = []
    for n, s in nodes.items():
        assert of(e.handle(Reserved(now, n, n, s)), Prepare) == [Prepare(n)]
        out += e.handle(Prepared(now, n))
    return out + e.handle(Tick(now))


def commit(e: AppEngine, worker: str, task: str, now: float = 1.0) -> list[Action]:
    out = e.handle(FromWorker(now, worker, result(task)))
    assert of(out, StageOutputs)
    return e.handle(OutputsStaged(now, task, 1))


def test_places_ready_tasks_on_free_slots_and_journals_each_start() -> None:
    e = AppEngine(app=APP, spec=spec(2), me="coord", now=0.0)
    out = linked(e, {"a": 1, "b": 1})
    launches = of(out, Launch)
    assert (
        sorted((a.task, a.worker) for a in launches if isinstance(a, Launch))
        == [
            ("t1", "b"),
            ("t2", "a"),
        ]
        or len(launches) == 2
    )
    started = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert all(isinstance(s, je.Started) and s.at == 0.0 for s in started) and len(started) == 2


def test_no_ack_before_w_durable_copies() -> None:
    members = Members(1, ("a", "b", "c"))  # W = 2 of 3; the coordinator is not a member
    e = AppEngine(app=APP, spec=spec(3, replicas=3), me="coord", now=0.0, members=members)
    out = linked(e, {"a": 1, "b": 1, "c": 1})
    assert {a.node for a in of(out, Feed) if isinstance(a, Feed)} == {"a", "b", "c"}
    worker = next(a.worker for a in of(out, Launch) if isinstance(a, Launch))
    out = commit(e, worker, "t1")
    [app] = [a for a in of(out, Append) if isinstance(a, Append)]
    assert isinstance(app.entry, je.Finished) and app.entry.seconds == 1.5 and app.promote
    assert not of(out, Ack)
    seq = app.seq
    assert not of(e.handle(FromWorker(2.0, "a", JournalAck(APP, 1, seq, True, 1))), Ack)
    assert not of(e.handle(FromWorker(2.0, "a", JournalAck(APP, 1, seq, True, 1))), Ack)
    out = e.handle(FromWorker(2.0, "b", JournalAck(APP, 1, seq, True, 1)))
    assert of(out, Ack) == [Ack(worker, "t1", 1, 1)]


def test_a_duplicate_result_is_acknowledged_again_and_changes_nothing() -> None:
    e = AppEngine(app=APP, spec=spec(1), me="coord", now=0.0)
    worker = next(a.worker for a in of(linked(e, {"a": 1}), Launch) if isinstance(a, Launch))
    assert of(commit(e, worker, "t1"), Ack)
    out = e.handle(FromWorker(3.0, worker, result("t1")))
    assert of(out, Ack) and not of(out, Append) and not of(out, StageOutputs)


def test_a_workers_no_free_slot_refusal_requeues_the_task_without_counting_a_failure() -> None:
    # A coordinator's view of a worker's slots can be stale (after a takeover the worker may
    # run an attempt the journal lacks): a refusal is requeued, not a failure, and nothing more
    # is placed on that worker until it sends a real result.
    e = AppEngine(app=APP, spec=spec(2), me="coord", now=0.0)
    out = linked(e, {"a": 2})
    assert len(of(out, Launch)) == 2
    why = f"{NO_FREE_SLOT} (2 of 2 in use, the task needs 1)"
    out = e.handle(FromWorker(1.0, "a", failed_result(APP, "t1", 1, why)))
    [app] = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert isinstance(app, je.Abandoned) and not app.counts_as_failure, app
    assert "corrupted" not in app.reason and NO_FREE_SLOT in app.reason
    assert not of(e.handle(Tick(2.0)), Launch)
    out = e.handle(FromWorker(3.0, "a", result("t2")))
    out += e.handle(OutputsStaged(3.0, "t2", 1)) + e.handle(Tick(4.0))
    assert [(a.task, a.attempt) for a in of(out, Launch) if isinstance(a, Launch)] == [("t1", 2)]


def test_a_worker_refusing_every_task_does_not_keep_the_app_from_finishing_elsewhere() -> None:
    # Hostile: a grid-key holder volunteers and answers every RunTask with a refusal, so its
    # tasks never count as failures; the honest worker must still get them all.
    e = AppEngine(app=APP, spec=spec(4), me="coord", now=0.0)
    out, now, ran = linked(e, {"rogue": 1, "b": 1}), 1.0, set()
    for _ in range(50):
        launches = [a for a in of(out, Launch) if isinstance(a, Launch)]
        out = []
        for a in launches:
            now += 0.01
            if a.worker == "rogue":
                why = f"{NO_FREE_SLOT} (1 of 1 in use)"
                out += e.handle(
                    FromWorker(now, a.worker, failed_result(APP, a.task, a.attempt, why))
                )
            else:
                out += e.handle(FromWorker(now, a.worker, result(a.task, a.attempt)))
                out += e.handle(OutputsStaged(now, a.task, a.attempt))
                ran.add(a.task)
        now += 0.1
        out += e.handle(Tick(now))
        if of(out, Ended):
            break
    assert of(out, Ended) and ran == {"t1", "t2", "t3", "t4"}


def test_a_failed_result_without_outputs_says_its_own_reason_not_corruption() -> None:
    e = AppEngine(app=APP, spec=spec(1), me="coord", now=0.0)
    worker = next(a.worker for a in of(linked(e, {"a": 1}), Launch) if isinstance(a, Launch))
    r = failed_result(APP, "t1", 1, "result of 9 bytes is too large for one message")
    out = e.handle(FromWorker(1.0, worker, r))
    assert not of(out, StageOutputs)  # no files to unpack: an empty blob is no archive
    [app] = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert isinstance(app, je.Abandoned) and app.counts_as_failure
    assert app.reason == r.error


def test_a_lost_link_requeues_all_but_results_in_flight() -> None:
    e = AppEngine(app=APP, spec=spec(2), me="coord", now=0.0)
    out = linked(e, {"a": 2})
    assert len(of(out, Launch)) == 2
    assert of(e.handle(FromWorker(1.0, "a", result("t1"))), StageOutputs)  # t1 in flight
    out = e.handle(LinkLost(2.0, "a", "silent"))
    abandoned = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert [(x.task, x.counts_as_failure) for x in abandoned if isinstance(x, je.Abandoned)] == [
        ("t2", False)
    ]
    out = e.handle(OutputsStaged(2.5, "t1", 1))  # the commit decides t1: it is done
    assert any(isinstance(a, Append) and isinstance(a.entry, je.Finished) for a in out)
    assert e.table.state("t1").value == "done" and e.table.state("t2").value == "ready"


def test_a_workers_slot_takes_the_next_task_while_its_last_result_commits() -> None:
    e = AppEngine(app=APP, spec=spec(3), me="coord", now=0.0)
    [first] = of(linked(e, {"a": 1}), Launch)
    assert isinstance(first, Launch) and first.worker == "a"
    out = e.handle(FromWorker(1.0, "a", result(first.task)))  # staged, not yet committed
    assert of(out, StageOutputs) and not of(out, Ack)
    out += e.handle(Tick(1.0))
    [second] = of(out, Launch)
    assert isinstance(second, Launch) and second.worker == "a" and second.task != first.task
    out = e.handle(OutputsStaged(1.5, first.task, 1))
    assert of(out, Ack) == [Ack("a", first.task, 1, 1)]
    out += e.handle(Tick(1.5))
    assert not of(out, Launch)  # the slot was freed once, not again at the commit


def test_a_result_for_an_attempt_placed_elsewhere_closes_the_link() -> None:
    e = AppEngine(app=APP, spec=spec(1), me="coord", now=0.0)
    worker = next(a.worker for a in of(linked(e, {"a": 1}), Launch) if isinstance(a, Launch))
    e.handle(Reserved(0.5, "b", "b", 1))
    other = "b" if worker == "a" else "a"
    out = e.handle(FromWorker(1.0, other, result("t1")))
    assert of(out, CloseLink) and not of(out, StageOutputs) and not of(out, Append)


def taking_over(adopting: bool = True) -> AppEngine:
    entries = [je.Started("t1", 1, "a", "a", 0.0), je.Started("t2", 1, "b", "b", 0.0)]
    role = CoordinatorRole.restored(APP, Role.TAKING_OVER, 2)
    placement = None if adopting else MiddlewarePlacement("embedded")
    return AppEngine(
        app=APP, spec=spec(2), me="r", now=10.0, role=role, entries=entries, placement=placement
    )


def test_after_a_takeover_attempts_their_worker_runs_are_adopted_the_rest_abandoned() -> None:
    e = taking_over()
    e.handle(Seen((offer("a", state="worker", app=APP), offer("b", state="worker", app=APP))))
    out = e.handle(Tick(10.0))
    asked = {(a.offer.node, a.term, a.rehome) for a in of(out, Recruit) if isinstance(a, Recruit)}
    assert asked == {("a", 2, True), ("b", 2, True)}
    for n in "ab":
        e.handle(Reserved(10.1, n, n, 1))
        e.handle(Prepared(10.1, n))
    assert not of(e.handle(FromWorker(10.2, "a", HeartbeatAck(APP, 2, ("t1#1",)))), Append)
    out = e.handle(FromWorker(10.2, "b", HeartbeatAck(APP, 2, ())))
    [x] = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert isinstance(x, je.Abandoned) and (x.task, x.counts_as_failure) == ("t2", False)
    e.handle(Tick(10.3))
    assert e.role.role is Role.RUNNING and e.ledger.running.get(("t1", 1)) == ("a", 1)
    assert of(commit(e, "a", "t1", 10.4), Ack)  # the adopted attempt's result commits


def test_after_a_takeover_an_attempt_nobody_confirms_is_abandoned_after_the_grace() -> None:
    e = taking_over()
    e.handle(Seen((offer("a", state="worker", app=APP),)))  # b is gone
    e.handle(Tick(10.0))
    e.handle(Reserved(10.1, "a", "a", 1))
    e.handle(Prepared(10.1, "a"))
    e.handle(FromWorker(10.2, "a", HeartbeatAck(APP, 2, ("t1#1",))))
    e.handle(Tick(10.3))  # the grace starts once every re-home was answered
    assert e.role.role is Role.TAKING_OVER
    out = e.handle(Tick(10.3 + e.timing.rehome_grace))
    abandoned = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert [x.task for x in abandoned if isinstance(x, je.Abandoned)] == ["t2"]
    assert e.role.role is Role.RUNNING


def test_after_a_takeover_with_middleware_placement_every_running_attempt_is_abandoned() -> None:
    e = taking_over(adopting=False)
    out = e.handle(Tick(10.0))
    abandoned = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert sorted(x.task for x in abandoned if isinstance(x, je.Abandoned)) == ["t1", "t2"]


def test_a_higher_term_stops_all_acks() -> None:
    members = Members(1, ("a", "b", "c"))
    e = AppEngine(app=APP, spec=spec(3, replicas=3), me="coord", now=0.0, members=members)
    out = linked(e, {"a": 1, "b": 1, "c": 1})
    launches = [a for a in of(out, Launch) if isinstance(a, Launch)]
    seqs = []
    for la in launches:
        out = commit(e, la.worker, la.task)
        seqs += [a.seq for a in of(out, Append) if isinstance(a, Append)]
    out = e.handle(FromWorker(2.0, "c", HeartbeatAck(APP, 5, ())))  # term 5 exists
    assert e.role.role is Role.STEPPED_DOWN and of(out, Ended) == [Ended("stepped-down")]
    assert of(out, CloseLink)
    for n in "ab":
        assert not of(e.handle(FromWorker(3.0, n, JournalAck(APP, 1, max(seqs), True, 1))), Ack)
    assert not of(e.handle(FromWorker(3.0, "a", result("t1"))), Ack)


def test_the_quorum_is_a_policy_given_to_the_engine() -> None:
    class AtOnce:
        def durable(self, members: Members, acked: Mapping[str, int], seq: int) -> bool:
            return True

    members = Members(1, ("a", "b", "c"))
    e = AppEngine(
        app=APP, spec=spec(3, replicas=3), me="coord", now=0.0, members=members, quorum=AtOnce()
    )
    worker = next(
        a.worker for a in of(linked(e, {"a": 1, "b": 1, "c": 1}), Launch) if isinstance(a, Launch)
    )
    assert of(commit(e, worker, "t1"), Ack)  # no replica acknowledged: the broken rule acks


def test_the_app_ends_once_replicas_hold_the_end_then_releases_with_the_outcome() -> None:
    e = AppEngine(app=APP, spec=spec(1), me="coord", now=0.0)
    worker = next(a.worker for a in of(linked(e, {"a": 1}), Launch) if isinstance(a, Launch))
    commit(e, worker, "t1")
    out = e.handle(Tick(2.0))
    assert e.role.role is Role.FINISHED and of(out, Ended) == [Ended("finished")]
    assert any(getattr(a, "outcome", "") == "finished" for a in out)


def test_a_worker_claiming_a_ready_task_it_was_never_given_is_not_believed() -> None:
    # Hostile: a linked worker (any grid-key holder) sends a result for the next attempt of
    # a task that waits for a slot. Only a worker re-homed by a takeover is believed so.
    e = AppEngine(app=APP, spec=spec(2), me="coord", now=0.0)
    linked(e, {"a": 1})  # t1 runs on a; t2 is ready, never given to anyone
    assert e.table.ready() == ["t2"]
    out = e.handle(FromWorker(1.0, "a", result("t2")))
    assert not of(out, Append) and not of(out, Ack) and not of(out, StageOutputs)
    assert e.table.ready() == ["t2"]


def test_after_a_takeover_a_rehomed_workers_unjournaled_attempt_is_adopted() -> None:
    entries = [je.Started("t1", 1, "a", "a", 0.0)]  # t2's Started died with the old one
    role = CoordinatorRole.restored(APP, Role.TAKING_OVER, 2)
    e = AppEngine(app=APP, spec=spec(2), me="r", now=10.0, role=role, entries=entries)
    e.handle(Seen((offer("a", slots=2, state="worker", app=APP),)))
    e.handle(Tick(10.0))
    e.handle(Reserved(10.1, "a", "a", 2))
    e.handle(Prepared(10.1, "a"))
    out = e.handle(FromWorker(10.2, "a", HeartbeatAck(APP, 2, ("t1#1", "t2#1"))))
    [x] = [a.entry for a in of(out, Append) if isinstance(a, Append)]
    assert isinstance(x, je.Started) and (x.task, x.attempt, x.worker) == ("t2", 1, "a")
    assert of(commit(e, "a", "t2", 10.3), Ack)


def test_a_give_back_requeues_the_attempt_and_releases_the_worker_saying_why() -> None:
    e = AppEngine(app=APP, spec=spec(1), me="coord", now=0.0)
    launched = of(linked(e, {"a": 1}), Launch)
    assert [(a.task, a.worker) for a in launched if isinstance(a, Launch)] == [("t1", "a")]
    why = "paused by its owner for over 60 s"
    out = e.handle(FromWorker(1.0, "a", GiveBack(APP, "t1", 1, why)))
    released = [a for a in of(out, Release) if isinstance(a, Release)]
    assert [(r.worker, r.reason) for r in released] == [("a", why)]  # not "its owner needs it"
    rec = e.table.record("t1")
    assert rec.state.value == "ready" and rec.attempts == 1  # requeued, not a failure
