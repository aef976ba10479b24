"""The coordinator's side of passive replication: feeding the journal to k replicas.

A replica is a recruited worker that also keeps the app's journal (DESIGN.md: a replica is a
reserved machine, so no rival can take it). Each replica gets one ``_Feed``: a queue drained
by one sender task, so entries arrive in journal order. A feed opens with a snapshot
(``ReplicaOpen``: every entry so far and every committed task's files) and goes on with one
``JournalAppend`` per entry. Replicas answer ``JournalAck(seq)``; ``durable(seq)`` waits until
at least one replica holds entry ``seq`` — the coordinator acknowledges a result to its
worker only after that, so an acknowledged result survives the coordinator's crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bonjourgrid.control.messages import JournalAppend, ReplicaOpen, Replicas
from bonjourgrid.coordinator.scheduling import choose_replicas
from bonjourgrid.coordinator.worker_link import WorkerLink

log = logging.getLogger(__name__)

Snapshot = Callable[[tuple[str, ...]], ReplicaOpen]
"""Builds a ``ReplicaOpen`` of everything journaled so far, with the given ranks."""


class _Feed:
    def __init__(self, link: WorkerLink, first: object) -> None:
        self.link = link
        self.acked = 0
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._queue.put_nowait(first)
        self._task = asyncio.create_task(self._send(), name=f"journal feed {link.host}")

    def put(self, msg: object) -> None:
        self._queue.put_nowait(msg)

    async def _send(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                await self.link.send(msg)
            except Exception as e:  # the link's loss handler replaces this replica
                log.info("journal feed to %s stopped: %s", self.link.host, e)
                return

    def close(self) -> None:
        self._task.cancel()


class Replication:
    def __init__(self, app_id: str, wanted: int, self_node: str, snapshot: Snapshot) -> None:
        self.app_id = app_id
        self.wanted = wanted
        self.self_node = self_node
        self._snapshot = snapshot
        self.ranks: tuple[str, ...] = ()
        self._feeds: dict[str, _Feed] = {}
        self._changed = asyncio.Event()

    def update(self, staged: Sequence[WorkerLink], term: int) -> None:
        """Keep ``wanted`` replicas among the staged workers (never this node itself)."""
        if self.wanted <= 0:
            return
        by_node = {k.node: k for k in staged if k.node != self.self_node and not k.closed}
        ranks = tuple(choose_replicas(self.ranks, list(by_node), self.wanted))
        for node in list(self._feeds):
            if node not in ranks or self._feeds[node].link is not by_node.get(node):
                self._feeds.pop(node).close()
        if ranks == self.ranks and all(n in self._feeds for n in ranks):
            return
        self.ranks = ranks
        for node in ranks:
            if node not in self._feeds:
                self._feeds[node] = _Feed(by_node[node], self._snapshot(ranks))
                log.info("app %s: %s keeps the journal", self.app_id, by_node[node].host)
            else:
                self._feeds[node].put(Replicas(self.app_id, term, ranks))
        self._changed.set()

    def resync(self, node: str) -> None:
        """A replica asked for a snapshot (it saw a gap)."""
        feed = self._feeds.get(node)
        if feed is not None:
            feed.put(self._snapshot(self.ranks))

    def append(self, msg: JournalAppend) -> None:
        for feed in self._feeds.values():
            feed.put(msg)

    def acked(self, node: str, seq: int) -> None:
        feed = self._feeds.get(node)
        if feed is not None and seq > feed.acked:
            feed.acked = seq
            self._changed.set()

    def drop(self, node: str) -> None:
        feed = self._feeds.pop(node, None)
        if feed is not None:
            feed.close()
            self._changed.set()

    async def durable(self, seq: int) -> bool:
        """Wait until a replica holds entry ``seq``. False at once when no replica is fed
        (none wanted, or none left to feed: the result is then durable only here)."""
        while True:
            if not self._feeds:
                return False
            if any(f.acked >= seq for f in self._feeds.values()):
                return True
            self._changed.clear()
            await self._changed.wait()

    async def settle(self, seq: int, timeout: float) -> None:
        """Wait (at most ``timeout``) until every replica holds entries up to ``seq``: said
        before "app ended", so each replica's copy of an ended app is whole."""

        async def all_acked() -> None:
            while any(f.acked < seq for f in self._feeds.values()):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(all_acked(), timeout)
        except asyncio.TimeoutError:
            log.warning("app %s: a replica did not confirm the journal's end", self.app_id)

    def close(self) -> None:
        for feed in self._feeds.values():
            feed.close()
        self._feeds.clear()
        self._changed.set()
