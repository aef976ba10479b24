"""The attempts ledger: the ONE owner of which workers an app holds, their slot use, and
which attempts run where, are unconfirmed after a takeover, or have a result in flight.

Before the engine, slot accounting was changed at about eleven places in three files of the
coordinator's mixins; here every change is a method with one meaning. Pure (no I/O, no clock:
times are passed in).

* **workers**: linked workers (``Worker``: slots, offer, ready once prepared, ``used`` CPUs);
  ``recruiting``: asked, not yet answered; ``refused``: when each last refused or was lost
  (backoff before asking it again).
* **running**: attempt key -> (worker, cpus) for attempts placed here, or confirmed after a
  takeover (their slots count in ``used``).
* **unconfirmed**: after a takeover, attempts the journal says run, on the worker it names,
  not yet confirmed by that worker (``HeartbeatAck.running``); they hold their worker (it is
  not released) but no slot until confirmed.
* **in_flight**: attempts whose result arrived and is being committed (staged, journaled,
  waiting for ``W`` durable copies): a lost link does not requeue them; the commit decides.
  Their slot is free from the result's arrival (the worker's task has ended: it takes the
  next task while this one commits), though the attempt stays in ``running`` until settled.
"""

from __future__ import annotations

from dataclasses import dataclass

from bonjourgrid.engine.matchmaking import Offer

Key = tuple[str, int]
"""(task id, attempt number)."""


@dataclass
class Worker:
    node: str
    host: str
    slots: int
    offer: Offer | None = None
    ready: bool = False
    used: int = 0
    full: bool = False
    """It refused a task for want of a free slot (it runs work this engine does not know of):
    nothing is placed on it until it next sends a result that is not a refusal."""

    @property
    def free(self) -> int:
        return 0 if self.full else self.slots - self.used


class Ledger:
    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.recruiting: set[str] = set()
        self.refused: dict[str, float] = {}
        self.running: dict[Key, tuple[str, int]] = {}
        self.unconfirmed: dict[Key, str] = {}
        self.in_flight: set[Key] = set()

    # --- workers ------------------------------------------------------------------------

    def asking(self, node: str) -> None:
        self.recruiting.add(node)

    def answered(self, node: str) -> None:
        self.recruiting.discard(node)

    def link(self, w: Worker) -> None:
        """A reservation accepted (a re-home replaces the old link's view)."""
        self.recruiting.discard(w.node)
        old = self.workers.get(w.node)
        if old is not None:
            w.used = old.used
        else:  # linked again after a loss: its results still in flight hold slots till settled
            w.used = sum(cpus for node, cpus in self.running.values() if node == w.node)
        self.workers[w.node] = w

    def refuse(self, node: str, now: float) -> None:
        self.refused[node] = now

    def unlink(self, node: str) -> Worker | None:
        """Forget ``node`` (released or lost); its attempts stay in ``running`` until the
        caller settles them (``requeue``)."""
        return self.workers.pop(node, None)

    def idle(self) -> list[str]:
        """Ready workers running nothing of ours (candidates for release)."""
        return [w.node for w in self.workers.values() if w.ready and w.used == 0]

    def held(self) -> set[str]:
        """Workers an unconfirmed attempt names: never released before it is settled."""
        return set(self.unconfirmed.values())

    # --- attempts -------------------------------------------------------------------------

    def start(self, key: Key, node: str, cpus: int) -> None:
        self.running[key] = (node, cpus)
        w = self.workers.get(node)
        if w is not None:
            w.used += cpus

    def confirm(self, key: Key, node: str, cpus: int) -> None:
        """A worker says it runs an unconfirmed attempt: it runs here now (adopted)."""
        self.unconfirmed.pop(key, None)
        self.start(key, node, cpus)

    def result_in(self, key: Key, node: str) -> None:
        """``node``'s result for ``key`` arrived: it is in flight, and the slot it held on
        ``node`` is free now (kept in ``running`` with no CPUs until ``settle``)."""
        self.in_flight.add(key)
        held = self.running.get(key)
        if held is not None and held[0] == node and held[1]:
            self.running[key] = (node, 0)
            w = self.workers.get(node)
            if w is not None:
                w.used = max(0, w.used - held[1])

    def settle(self, key: Key) -> None:
        """The attempt ended here (committed, given back, abandoned): free its slot."""
        self.unconfirmed.pop(key, None)
        self.in_flight.discard(key)
        held = self.running.pop(key, None)
        if held is not None:
            w = self.workers.get(held[0])
            if w is not None:
                w.used = max(0, w.used - held[1])
