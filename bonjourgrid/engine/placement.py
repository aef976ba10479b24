"""How an app's tasks reach machines: a strategy the engine is given (no ``places_tasks``
branches in the engine).

* ``CorePlacement`` (the embedded farm): the engine places each ready task on a free slot
  of a ready worker (``scheduling.place``), counts the slot in the ledger, releases idle
  workers, and after a takeover keeps the journal's running attempts *unconfirmed* until
  their worker confirms them (the takeover rule, engine/app.py).
* ``MiddlewarePlacement`` (HTCondor, BOINC): every ready task goes to the middleware at once
  with no worker; the middleware matches it to the recruited machines and the engine only
  records where it ran (``BackendResult.worker``). Workers are kept to the end (the engine
  does not know which machine is idle), and after a takeover every running attempt is
  abandoned (the old head's queue left with the old coordinator).

Both commit results by the same path (``AppEngine``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bonjourgrid.app.spec import TaskSpec
from bonjourgrid.engine.ledger import Ledger
from bonjourgrid.engine.scheduling import WorkerSlots, place


class Placement(Protocol):
    name: str
    """The backend's name (matchmaking checks a volunteer offers it)."""
    releases_idle: bool
    """Whether idle workers may be released before the end."""
    adopts_on_takeover: bool
    """After a takeover: keep running attempts unconfirmed (True) or abandon them all."""

    def place(self, ready: Sequence[TaskSpec], ledger: Ledger) -> list[tuple[str, str]]:
        """``(task, worker)`` for the ready tasks to start now (worker "": the middleware)."""
        ...

    def unplaced(self, ready: int, running: int, ledger: Ledger) -> int:
        """Tasks that no slot covers yet (what recruiting is for)."""
        ...


class CorePlacement:
    """The engine places tasks itself (the embedded farm)."""

    releases_idle = True
    adopts_on_takeover = True

    def __init__(self, name: str = "embedded") -> None:
        self.name = name

    def place(self, ready: Sequence[TaskSpec], ledger: Ledger) -> list[tuple[str, str]]:
        ws = ledger.workers.values()
        if not any(w.ready and w.free > 0 for w in ws):
            return []
        slots = [WorkerSlots(w.node, w.free, w.offer, w.ready) for w in ws]
        return place(ready, slots, self.name)

    def unplaced(self, ready: int, running: int, ledger: Ledger) -> int:
        return ready


class MiddlewarePlacement:
    """The backend's middleware places tasks (HTCondor's schedd, BOINC's scheduler)."""

    releases_idle = False
    adopts_on_takeover = False

    def __init__(self, name: str) -> None:
        self.name = name

    def place(self, ready: Sequence[TaskSpec], ledger: Ledger) -> list[tuple[str, str]]:
        return [(t.id, "") for t in ready]

    def unplaced(self, ready: int, running: int, ledger: Ledger) -> int:
        slots = sum(w.slots for w in ledger.workers.values())
        return max(0, ready + running - slots)


def for_backend(name: str, places_tasks: bool) -> Placement:
    """The strategy for a backend: ``places_tasks`` as ``CoordinatorBackend`` declares it."""
    return MiddlewarePlacement(name) if places_tasks else CorePlacement(name)
