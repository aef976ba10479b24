"""What the simulated mDNS browsers see: every machine's last advertised offer.

mDNS is for presence, not liveness (DESIGN.md): a machine that crashes without a goodbye
stays listed with its last state, so coordinators keep asking dead idle machines and must
time out. A restarted machine advertises itself as idle again.

Coordinator records (``_bjg-coord``: app, node, term) are listed the same way: published
when a machine starts coordinating an app, withdrawn (a goodbye) when it stops, left behind
by a crash. The term in a record is informative only: a coordinator that sees a rival record
with a higher term asks that machine over the control channel before it believes it.
"""

from __future__ import annotations

import dataclasses

from bonjourgrid.coordinator.matchmaking import Offer


class Directory:
    def __init__(self) -> None:
        self._offers: dict[str, Offer] = {}
        self._idle: dict[str, Offer] = {}
        self._serving: dict[str, dict[str, Offer]] = {}
        self._coords: dict[str, dict[str, int]] = {}

    def advertise(self, offer: Offer, state: str, app: str | None = None) -> None:
        """Publish ``offer`` with ``state`` (``idle`` or ``worker``) and, for a worker, the
        ``app`` it serves (its ``_bjg-worker`` TXT), replacing the old record."""
        old = self._offers.get(offer.node)
        if old is not None and old.app is not None:
            self._serving.get(old.app, {}).pop(offer.node, None)
        o = dataclasses.replace(offer, state=state, app=app if state != "idle" else None)
        self._offers[o.node] = o
        if state == "idle":
            self._idle[o.node] = o
        else:
            self._idle.pop(o.node, None)
        if o.app is not None:
            self._serving.setdefault(o.app, {})[o.node] = o

    def serving(self, app: str) -> list[Offer]:
        """The machines listed as workers of ``app`` (what a new coordinator re-homes)."""
        return list(self._serving.get(app, {}).values())

    def idle(self) -> list[Offer]:
        """The machines listed as idle (some may be dead), in the order they appeared."""
        return list(self._idle.values())

    def offer(self, node: str) -> Offer | None:
        return self._offers.get(node)

    def publish_coordinator(self, app: str, node: str, term: int) -> None:
        self._coords.setdefault(app, {})[node] = term

    def withdraw_coordinator(self, app: str, node: str) -> None:
        self._coords.get(app, {}).pop(node, None)

    def coordinators(self, app: str) -> dict[str, int]:
        """Node -> advertised term of every record for ``app``."""
        return self._coords.get(app, {})
