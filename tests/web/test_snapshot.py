"""The page's document from status/apps rows and a results document."""

from __future__ import annotations

from bonjourgrid.web import snapshot as snap


def row(**kw: object) -> dict[str, object]:
    return {"id": "n1", "host": "pc1", "state": "idle", "reachable": True, "owner": "ok", **kw}


def test_machine_states() -> None:
    assert snap.machine_state(row()) == "idle"
    assert snap.machine_state(row(state="worker", app="a1")) == "worker"
    assert snap.machine_state(row(state="worker", owner="busy")) == "owner-busy"
    assert snap.machine_state(row(owner="busy")) == "owner-busy"
    assert snap.machine_state(row(state="worker", owner="busy", paused=True)) == "paused"
    assert snap.machine_state(row(owner="busy", paused=True)) == "paused"
    assert snap.machine_state(row(reachable=False, state="worker")) == "unreachable"


def test_machines_carry_resources_and_backends() -> None:
    rows = snap.machines(
        [row(cpus=8, slots=6, addresses=["10.0.0.2"])],
        {"n1": {"mem_mb": 16000, "backends": ["embedded", "condor"]}},
    )
    assert rows[0]["cpus"] == 8 and rows[0]["slots"] == 6 and rows[0]["mem_mb"] == 16000
    assert rows[0]["backends"] == ["embedded", "condor"]
    assert snap.by_state(rows)["idle"] == 1


def test_eta_from_the_rate_seen() -> None:
    assert snap.eta_seconds([(0.0, 0), (10.0, 5)], 10) == 20.0
    assert snap.eta_seconds([(0.0, 0), (10.0, 0)], 10) is None
    assert snap.eta_seconds([(0.0, 0)], 3) is None
    assert snap.eta_seconds([], 0) == 0.0


def test_apps_counts_only_for_held_apps() -> None:
    held = {"app": "a1", "name": "sq", "user": "ann", "coordinator": "pc0", "term": 2,
            "state": "coordinating", "counts": {"done": 3, "running": 1, "pending": 2},
            "waiting_reason": "no volunteer has gpus>=1 (3 seen)"}  # fmt: skip
    seen = {"app": "b2", "name": "x", "user": "bob", "coordinator": "pc9", "term": 1,
            "state": "running"}  # fmt: skip
    rows = snap.apps([held, seen], {"a1": 12.5})
    assert rows[0]["counts"] == {"done": 3, "running": 1, "pending": 2} and rows[0]["eta"] == 12.5
    assert rows[0]["waiting_reason"].startswith("no volunteer")
    assert rows[1]["counts"] is None and rows[1]["held"] is False


def test_tasks_failed_first_with_their_stderr_tail() -> None:
    doc = {"app": "a1", "name": "sq", "tasks": [
        {"id": "t1", "state": "done", "attempts": 1, "worker": "pc1", "exit_code": 0,
         "seconds": 1.5, "started": "2026-12-07T01:00:00.000Z", "ended": None},
        {"id": "t2", "state": "failed", "attempts": 3, "worker": "pc2", "exit_code": 1,
         "reason": "exit status 1"},
    ], "outcome": {"state": "failed", "reason": "1 task failed"}}  # fmt: skip
    d = snap.tasks(doc, {"t2": b"x" * 5000 + b"Traceback: boom\n"})
    assert [t["id"] for t in d["tasks"]] == ["t2", "t1"] and d["total"] == 2
    tail = d["tasks"][0]["stderr_tail"]
    assert tail.endswith("Traceback: boom\n") and len(tail) <= snap.TAIL_BYTES
    assert d["tasks"][1]["stderr_tail"] is None and d["tasks"][1]["seconds"] == 1.5


def test_tail_shows_control_characters_as_replacement() -> None:
    assert snap.tail(b"a\x1b[31mred\x00\tb\n\xff") == "a\ufffd[31mred\ufffd\tb\n\ufffd"


def test_sizes_are_bounded() -> None:
    rows = snap.machines([row(host="h" * 10_000)] * (snap.MAX_MACHINES + 5), {})
    assert len(rows) == snap.MAX_MACHINES and len(str(rows[0]["host"])) == snap.MAX_TEXT
    many = {"app": "a", "tasks": [{"id": f"t{i}", "state": "done"} for i in range(3000)]}
    d = snap.tasks(many, {})
    assert len(d["tasks"]) == snap.MAX_TASKS and d["total"] == 3000
