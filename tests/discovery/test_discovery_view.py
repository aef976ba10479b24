"""The live view: one listing per node (the record seen last), coordinators, stale drops."""

from __future__ import annotations

from bonjourgrid.discovery.txt import CoordTxt, NodeTxt
from bonjourgrid.discovery.view import CoordinatorRecord, Machine, View


def machine(node: str, state: str) -> Machine:
    app = None if state == "idle" else "app"
    txt = NodeTxt("g", node, "h", 1, 1, 1, "linux", "x86_64", (), app=app)
    return Machine(node, "h", state, ("169.254.1.1",), 1, txt, f"h-{node}")


def test_a_node_in_both_lists_is_shown_once_as_last_seen() -> None:
    view = View()
    view.put("h-n1._bjg-worker._tcp.local.", machine("n1", "worker"))
    view.put("h-n1._bjg-idle._tcp.local.", machine("n1", "idle"))
    assert [(m.node, m.state) for m in view.machines()] == [("n1", "idle")]
    view.put("h-n1._bjg-worker._tcp.local.", machine("n1", "worker"))
    assert [(m.node, m.state) for m in view.machines()] == [("n1", "worker")]
    assert view.drop("H-N1._bjg-worker._tcp.local.")  # names are case-insensitive
    assert [(m.node, m.state) for m in view.machines()] == [("n1", "idle")]


def test_put_reports_whether_anything_changed() -> None:
    view = View()
    assert view.put("a", machine("n1", "idle"))
    assert not view.put("a", machine("n1", "idle"))
    assert view.put("a", machine("n1", "worker"))
    assert not view.drop("b")


def test_coordinators_are_listed_apart() -> None:
    view = View()
    txt = CoordTxt("g", "n2", "h", "app", "name", "u", 4)
    view.put("c", CoordinatorRecord("n2", "h", "app", (), 1, txt))
    view.put("m", machine("n1", "idle"))
    assert [c.node for c in view.coordinators()] == ["n2"]
    assert [m.node for m in view.machines()] == ["n1"]


def test_records_of_an_old_generation_drop_unless_seen_again_or_kept() -> None:
    view = View()
    view.put("old", machine("n1", "idle"))
    view.put("again", machine("n2", "idle"))
    view.put("own", machine("n3", "idle"))
    view.generation += 1
    view.put("again", machine("n2", "idle"))
    assert view.drop_older_than(view.generation, keep={"own"})
    assert sorted(m.node for m in view.machines()) == ["n2", "n3"]
