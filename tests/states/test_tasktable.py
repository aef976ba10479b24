"""The coordinator's task table: every transition, illegal ones, idempotency, DAG readiness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.states.taskstate import TERMINAL_STATES, TaskState
from bonjourgrid.states.tasktable import Attempt, IllegalTaskTransition, TaskTable

S = TaskState


def t(id: str, *after: str, retries: int = 2) -> TaskSpec:
    return TaskSpec(id=id, command=("true",), after=tuple(sorted(after)), retries=retries)


def diamond() -> TaskTable:
    # a -> (b, c) -> d ; e independent
    return TaskTable([t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"), t("e")])


def states(table: TaskTable) -> dict[str, TaskState]:
    return {r.id: r.state for r in table.records()}


def test_roots_start_ready_and_the_rest_pending() -> None:
    table = diamond()
    assert table.ready() == ["a", "e"]
    assert states(table) == {
        "a": S.READY,
        "b": S.PENDING,
        "c": S.PENDING,
        "d": S.PENDING,
        "e": S.READY,
    }
    assert table.counts() == {S.PENDING: 3, S.READY: 2, S.RUNNING: 0, S.DONE: 0, S.FAILED: 0}
    assert not table.finished()


def test_start_numbers_attempts_and_marks_running() -> None:
    table = diamond()
    assert table.start("a", "w1", now=10.0) == Attempt("a", 1, "w1")
    assert table.state("a") is S.RUNNING
    assert table.ready() == ["e"]
    assert table.running_on("w1") == [Attempt("a", 1, "w1")]
    assert table.running_on("w2") == []


@pytest.mark.parametrize("task", ["b", "d"])
def test_starting_a_pending_task_is_illegal_and_changes_nothing(task: str) -> None:
    table = diamond()
    before = table.records()
    with pytest.raises(IllegalTaskTransition, match="pending"):
        table.start(task, "w1", now=0.0)
    assert table.records() == before


def test_starting_running_done_or_failed_tasks_is_illegal() -> None:
    table = TaskTable([t("run"), t("ok"), t("bad", retries=0)])
    table.start("run", "w", 0.0)
    a = table.start("ok", "w", 0.0)
    table.finish("ok", a.attempt, exit_code=0, now=1.0)
    b = table.start("bad", "w", 0.0)
    table.finish("bad", b.attempt, exit_code=1, now=1.0)
    before = table.records()
    for tid, state in (("run", "running"), ("ok", "done"), ("bad", "failed")):
        with pytest.raises(IllegalTaskTransition, match=state):
            table.start(tid, "w2", 5.0)
    assert table.records() == before


def test_unknown_task_is_a_key_error() -> None:
    table = diamond()
    with pytest.raises(KeyError):
        table.start("zzz", "w", 0.0)
    with pytest.raises(KeyError):
        table.record("zzz")


def test_success_records_result_and_readies_successors_when_all_preds_done() -> None:
    table = diamond()
    a = table.start("a", "w1", now=10.0)
    assert table.finish("a", a.attempt, exit_code=0, now=12.5)
    assert table.record("a") == table.record("a")
    rec = table.record("a")
    assert (rec.state, rec.attempts, rec.exit_code, rec.worker, rec.seconds, rec.reason) == (
        S.DONE,
        1,
        0,
        "w1",
        2.5,
        "",
    )
    assert table.ready() == ["b", "c", "e"]
    b = table.start("b", "w1", 13.0)
    table.finish("b", b.attempt, exit_code=0, now=14.0, seconds=0.75)
    assert table.record("b").seconds == 0.75
    assert table.state("d") is S.PENDING  # c not done yet
    c = table.start("c", "w2", 13.0)
    table.finish("c", c.attempt, exit_code=0, now=14.0)
    assert table.state("d") is S.READY


def test_failure_retries_then_fails_and_fails_successors_transitively() -> None:
    table = diamond()  # retries=2: three attempts in all
    for n in (1, 2):
        att = table.start("a", f"w{n}", float(n))
        assert att.attempt == n
        assert table.finish("a", n, exit_code=3, now=n + 0.5)
        assert table.state("a") is S.READY
        assert table.record("a").reason == ""
    table.start("a", "w3", 3.0)
    assert table.finish("a", 3, exit_code=3, now=4.0)
    rec = table.record("a")
    assert (rec.state, rec.attempts, rec.exit_code, rec.worker) == (S.FAILED, 3, 3, "w3")
    assert rec.reason == "exit code 3 (3 attempts)"
    for succ in ("b", "c", "d"):
        assert table.state(succ) is S.FAILED
        assert table.record(succ).reason == "dependency a failed"
    assert table.state("e") is S.READY
    assert table.any_failed()


def test_zero_retries_fails_on_first_error() -> None:
    table = TaskTable([t("x", retries=0)])
    table.start("x", "w", 0.0)
    table.finish("x", 1, exit_code=1, now=1.0)
    assert table.record("x").reason == "exit code 1 (1 attempt)"
    assert table.finished()


def test_finish_is_idempotent_and_ignores_stale_attempts() -> None:
    table = diamond()
    table.start("a", "w1", 0.0)
    assert table.finish("a", 1, exit_code=1, now=1.0)  # -> READY for retry
    table.start("a", "w2", 2.0)
    assert not table.finish("a", 1, exit_code=0, now=3.0)  # attempt 1 is superseded
    assert table.state("a") is S.RUNNING
    assert not table.finish("a", 7, exit_code=0, now=3.0)  # never started
    assert not table.finish("a", 0, exit_code=0, now=3.0)
    assert table.finish("a", 2, exit_code=0, now=3.0)
    before = table.records()
    assert not table.finish("a", 2, exit_code=0, now=4.0)  # duplicate
    assert not table.finish("a", 2, exit_code=9, now=4.0)  # conflicting duplicate
    assert table.records() == before


def test_finish_of_a_task_never_started_is_refused() -> None:
    table = diamond()
    assert not table.finish("a", 1, exit_code=0, now=0.0)
    assert not table.finish("b", 1, exit_code=0, now=0.0)
    assert table.state("a") is S.READY


def test_timeout_counts_against_retries() -> None:
    table = TaskTable([t("x", retries=1)])
    table.start("x", "w", 0.0)
    assert table.abandon("x", 1, reason="timeout after 5 s", counts_as_failure=True)
    assert table.state("x") is S.READY
    table.start("x", "w", 6.0)
    assert table.abandon("x", 2, reason="timeout after 5 s", counts_as_failure=True)
    rec = table.record("x")
    assert (rec.state, rec.reason) == (S.FAILED, "timeout after 5 s")


def test_worker_loss_does_not_use_retries_but_is_bounded_by_max_losses() -> None:
    table = TaskTable([t("x", retries=0)], max_losses=2)
    for n in (1, 2):
        table.start("x", f"w{n}", 0.0)
        assert table.worker_lost(f"w{n}") == [Attempt("x", n, f"w{n}")]
        assert table.state("x") is S.READY
    table.start("x", "w3", 0.0)
    table.worker_lost("w3")
    rec = table.record("x")
    assert (rec.state, rec.attempts, rec.reason) == (S.FAILED, 3, "worker w3 lost")


def test_worker_lost_abandons_only_that_workers_attempts() -> None:
    table = diamond()
    table.start("a", "w1", 0.0)
    table.start("e", "w2", 0.0)
    assert table.worker_lost("w1") == [Attempt("a", 1, "w1")]
    assert table.state("a") is S.READY
    assert table.state("e") is S.RUNNING
    assert table.worker_lost("w1") == []


def test_abandon_is_idempotent_and_only_touches_the_running_attempt() -> None:
    table = diamond()
    assert not table.abandon("a", 1, reason="x", counts_as_failure=True)  # READY, never started
    table.start("a", "w", 0.0)
    assert not table.abandon("a", 2, reason="x", counts_as_failure=True)  # wrong attempt
    assert table.abandon("a", 1, reason="lost", counts_as_failure=False)
    before = table.records()
    assert not table.abandon("a", 1, reason="lost", counts_as_failure=False)
    assert table.records() == before


def test_late_success_of_abandoned_attempt_counts_until_restarted() -> None:
    table = diamond()
    table.start("a", "w1", 0.0)
    table.worker_lost("w1")
    assert table.finish("a", 1, exit_code=0, now=4.0)  # READY, not restarted: accepted
    rec = table.record("a")
    assert (rec.state, rec.worker, rec.seconds) == (S.DONE, "w1", 4.0)
    assert table.ready() == ["b", "c", "e"]


def test_late_failure_of_abandoned_attempt_is_ignored() -> None:
    table = diamond()
    table.start("a", "w1", 0.0)
    table.worker_lost("w1")
    assert not table.finish("a", 1, exit_code=2, now=4.0)
    assert table.record("a").state is S.READY
    assert table.record("a").exit_code is None


def test_late_result_after_restart_is_refused() -> None:
    table = diamond()
    table.start("a", "w1", 0.0)
    table.worker_lost("w1")
    table.start("a", "w2", 1.0)
    assert not table.finish("a", 1, exit_code=0, now=2.0)
    assert table.state("a") is S.RUNNING


def test_cancel_fails_everything_not_terminal_and_keeps_done() -> None:
    table = diamond()
    a = table.start("a", "w", 0.0)
    table.finish("a", a.attempt, exit_code=0, now=1.0)
    table.start("b", "w", 1.0)
    table.cancel("cancelled by user")
    assert states(table) == {
        "a": S.DONE,
        "b": S.FAILED,
        "c": S.FAILED,
        "d": S.FAILED,
        "e": S.FAILED,
    }
    assert table.record("b").reason == "cancelled by user"
    assert table.record("a").reason == ""
    assert table.finished()
    assert not table.finish("b", 1, exit_code=0, now=2.0)  # result after cancel
    assert table.running_on("w") == []


def test_table_rejects_bad_graphs() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        TaskTable([t("a"), t("a")])
    with pytest.raises(ValueError, match="unknown task 'zz'"):
        TaskTable([t("a", "zz")])


# --- random sequences ----------------------------------------------------------------------

WORKERS = ["w1", "w2", "w3"]
IDS = ["a", "b", "c", "d", "e"]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(IDS), st.sampled_from(WORKERS)),
        st.tuples(
            st.just("finish"), st.sampled_from(IDS), st.integers(0, 5), st.sampled_from([0, 0, 1])
        ),
        st.tuples(st.just("abandon"), st.sampled_from(IDS), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("lost"), st.sampled_from(WORKERS)),
        st.tuples(st.just("cancel")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_sequences_keep_the_invariants(sequence: list[tuple[object, ...]]) -> None:
    table = diamond()
    accepted: set[tuple[str, int]] = set()
    terminal: dict[str, object] = {}
    now = 0.0
    for op in sequence:
        now += 1.0
        before = table.records()
        kind = op[0]
        if kind == "start":
            tid, worker = str(op[1]), str(op[2])
            if table.state(tid) is S.READY:
                a = table.start(tid, worker, now)
                assert a.attempt == table.record(tid).attempts
            else:
                with pytest.raises(IllegalTaskTransition):
                    table.start(tid, worker, now)
                assert table.records() == before
        elif kind == "finish":
            tid, att, code = str(op[1]), int(str(op[2])), int(str(op[3]))
            ok = table.finish(tid, att, exit_code=code, now=now)
            if ok:
                assert (tid, att) not in accepted, "a result was recorded twice"
                accepted.add((tid, att))
            else:
                assert table.records() == before
        elif kind == "abandon":
            tid, att, counts = str(op[1]), int(str(op[2])), bool(op[3])
            if not table.abandon(tid, att, reason="r", counts_as_failure=counts):
                assert table.records() == before
        elif kind == "lost":
            table.worker_lost(str(op[1]))
            assert table.running_on(str(op[1])) == []
        else:
            table.cancel("stop")
            assert table.finished()
        # terminal states never change; DONE only once every predecessor is DONE
        for rec in table.records():
            if rec.id in terminal:
                assert rec == terminal[rec.id]
            elif rec.state in TERMINAL_STATES:
                terminal[rec.id] = rec
            if rec.state in (S.READY, S.RUNNING, S.DONE):
                assert all(table.state(p) is S.DONE for p in table.spec(rec.id).after)
        assert sum(table.counts().values()) == len(IDS)


def test_record_to_json_is_the_results_json_entry() -> None:
    table = diamond()
    table.start("a", "host-1", 1.0)
    table.finish("a", 1, exit_code=0, now=3.0)
    assert table.record("a").to_json() == {
        "id": "a",
        "state": "done",
        "exit_code": 0,
        "attempts": 1,
        "worker": "host-1",
        "seconds": 2.0,
    }


def test_give_up_fails_a_ready_task_and_its_successors() -> None:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.states.taskstate import TaskState
    from bonjourgrid.states.tasktable import IllegalTaskTransition, TaskTable

    table = TaskTable([TaskSpec("a", ("true",)), TaskSpec("b", ("true",), after=("a",))])
    table.give_up("a", "no volunteer satisfies its requirements")
    assert table.record("a").state is TaskState.FAILED
    assert table.record("a").reason == "no volunteer satisfies its requirements"
    assert table.record("b").state is TaskState.FAILED
    assert table.finished()
    with pytest.raises(IllegalTaskTransition):
        table.give_up("a", "again")


def test_a_timed_out_attempt_keeps_its_run_time() -> None:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.states.tasktable import TaskTable

    table = TaskTable([TaskSpec("slow", ("sleep", "9"), retries=0)])
    table.start("slow", "w1", 0.0)
    assert table.abandon(
        "slow", 1, reason="timed out after 1 s", counts_as_failure=True, seconds=1.02
    )
    rec = table.record("slow")
    assert (rec.state.value, rec.exit_code, rec.seconds) == ("failed", None, 1.02)
