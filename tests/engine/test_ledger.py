"""The attempts ledger's slot accounting (engine/ledger.py) across a lost and re-made link.

Found by the simulation (seed 8 at 1000 machines / 400 apps): a worker lost while two of its
results were still being committed was reserved again; when those two settled, their slots
came off the new link's count, so the worker looked idle while it ran a task, was released,
and the app waited for that task forever."""

from __future__ import annotations

from bonjourgrid.engine.ledger import Ledger, Worker


def test_results_in_flight_from_a_lost_link_do_not_free_the_new_links_slots() -> None:
    ledger = Ledger()
    ledger.link(Worker("w", "w", 4, ready=True))
    ledger.start(("t1", 1), "w", 1)
    ledger.in_flight.add(("t1", 1))  # its result arrived; committing
    ledger.unlink("w")  # lost: the result in flight stays in ``running`` until settled
    ledger.link(Worker("w", "w", 4, ready=True))  # reserved again
    ledger.start(("t2", 1), "w", 1)
    ledger.settle(("t1", 1))  # the old result is committed
    assert ledger.workers["w"].used == 1  # t2 still runs there
    assert ledger.idle() == []
    ledger.settle(("t2", 1))
    assert ledger.idle() == ["w"]
