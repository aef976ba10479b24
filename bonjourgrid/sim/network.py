"""The in-memory network: a seeded router that delays, drops, duplicates and partitions.

Every message between two nodes goes through ``send``: the router draws its fate from the
scenario's one ``random.Random`` (so a seed fixes every fate), then schedules its delivery
on the virtual clock. A message reaches its destination only if, at delivery time, the
destination is up and on the same side of every partition as the sender (an island id per
node; 0 is the main land). A message to oneself is delivered too, after the same latency.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from bonjourgrid.sim.clock import VirtualClock


@dataclass(frozen=True)
class Faults:
    """The router's misbehaviour, as probabilities per message and delays in virtual seconds."""

    drop: float = 0.0
    duplicate: float = 0.0
    slow: float = 0.0
    """Probability that a message is held back by up to ``slow_delay`` (reorders it)."""
    latency: tuple[float, float] = (0.0002, 0.002)
    slow_delay: float = 0.3


Deliver = Callable[[str, object], None]
"""A node's inbox: ``deliver(src, message)``."""


class Network:
    def __init__(self, clock: VirtualClock, rng: random.Random, faults: Faults) -> None:
        self.clock = clock
        self.rng = rng
        self.faults = faults
        self._inboxes: dict[str, Deliver] = {}
        self._up: set[str] = set()
        self._island: dict[str, int] = {}
        self.sent = 0
        self.delivered = 0
        self.dropped = 0

    # --- membership ------------------------------------------------------------------------

    def attach(self, node: str, inbox: Deliver) -> None:
        """``node`` is up and receives with ``inbox`` (a restart attaches a fresh inbox)."""
        self._inboxes[node] = inbox
        self._up.add(node)

    def crash(self, node: str) -> None:
        """``node`` is down: everything to it, in flight included, is lost."""
        self._up.discard(node)

    def is_up(self, node: str) -> bool:
        return node in self._up

    def isolate(self, nodes: set[str], island: int) -> None:
        """Cut ``nodes`` off onto ``island`` (they still talk among themselves)."""
        for n in nodes:
            self._island[n] = island

    def heal(self, nodes: set[str]) -> None:
        for n in nodes:
            self._island.pop(n, None)

    def connected(self, a: str, b: str) -> bool:
        return self._island.get(a, 0) == self._island.get(b, 0)

    # --- traffic ---------------------------------------------------------------------------

    def send(self, src: str, dst: str, msg: object) -> None:
        self.sent += 1
        f = self.faults
        rng = self.rng
        if src not in self._up or not self.connected(src, dst):
            self.dropped += 1
            return
        if f.drop and rng.random() < f.drop:
            self.dropped += 1
            return
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        for _ in range(copies):
            delay = rng.uniform(*f.latency)
            if f.slow and rng.random() < f.slow:
                delay += rng.uniform(0.0, f.slow_delay)
            self.clock.call_later(delay, lambda: self._deliver(src, dst, msg))

    def _deliver(self, src: str, dst: str, msg: object) -> None:
        if dst not in self._up or not self.connected(src, dst):
            self.dropped += 1
            return
        self.delivered += 1
        self._inboxes[dst](src, msg)
