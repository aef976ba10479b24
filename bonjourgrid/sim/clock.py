"""A virtual clock: an event queue of callbacks keyed by virtual time.

Nothing here reads the wall clock or sleeps. ``run`` pops events in (time, sequence) order,
so two events at the same instant run in the order they were scheduled: a run is a pure
function of what was scheduled, which is what makes a seed's trace reproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class Timer:
    """One scheduled callback; ``cancel`` keeps it in the queue but makes it a no-op."""

    at: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    def __init__(self) -> None:
        self._now = 0.0
        self._seq = 0
        self._queue: list[Timer] = []
        self.events_run = 0
        """How many callbacks have run (a figure for benchmarks)."""

    @property
    def now(self) -> float:
        return self._now

    def call_at(self, at: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` at virtual time ``at`` (never earlier than now)."""
        self._seq += 1
        t = Timer(max(at, self._now), self._seq, fn)
        heapq.heappush(self._queue, t)
        return t

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        return self.call_at(self._now + delay, fn)

    def pending(self) -> int:
        return len(self._queue)

    def run(self, until: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Run events up to virtual time ``until``, or until ``stop()`` is true after one."""
        q = self._queue
        while q and q[0].at <= until:
            t = heapq.heappop(q)
            if t.cancelled:
                continue
            self._now = t.at
            self.events_run += 1
            t.fn()
            if stop():
                return
        self._now = max(self._now, until)
