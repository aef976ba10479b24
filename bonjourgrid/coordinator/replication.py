"""The coordinator's side of passive replication: feeding the journal to the replica set.

A replica is a recruited worker that also keeps the app's journal (DESIGN.md: a replica is a
reserved machine, so no rival can take it). Each member gets one ``_Feed``: a queue drained
by one sender task, so messages arrive in journal order. A feed opens with a snapshot
(``ReplicaOpen``: every entry so far and every committed task's files) followed by the set
(``Replicas``), and goes on with one ``JournalAppend`` per entry. Replicas answer
``JournalAck(seq, members)``.

The rules are faulttolerance/quorum.py's: ``durable(seq)`` waits until a write quorum of every
set in force holds entry ``seq`` at this term — the coordinator acknowledges a result to its
worker only after that, so an acknowledged result survives the coordinator and no other term
can be elected without it. The set changes one member at a time toward ``choose_replicas``;
each change is sent to the members (``Replicas``, version and the set before it) and counts
once a write quorum of the old and of the new set acknowledged it. Cut off from its set, the
coordinator commits nothing (the workers keep their results) and cannot refill the set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence

from bonjourgrid.control.messages import JournalAppend, ReplicaOpen, Replicas
from bonjourgrid.coordinator.scheduling import choose_replicas
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.faulttolerance.quorum import Members, next_members

log = logging.getLogger(__name__)

Snapshot = Callable[[tuple[str, ...]], ReplicaOpen]
"""Builds a ``ReplicaOpen`` of everything journaled so far, with the given ranks."""

Probe = Callable[[str], Coroutine[object, object, None]]
"""Asks a member this coordinator does not reach what it holds of the app (see ``update``)."""

_PROBE_EVERY = 1.0
"""Seconds between two probes of the same unreachable member (one request each)."""


class _Feed:
    def __init__(self, link: WorkerLink, *first: object) -> None:
        self.link = link
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        for msg in first:
            self._queue.put_nowait(msg)
        self._task = asyncio.create_task(self._send(), name=f"journal feed {link.host}")

    def put(self, msg: object) -> None:
        self._queue.put_nowait(msg)

    async def _send(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                await self.link.send(msg)
            except Exception as e:  # the link's loss handler drops this feed
                log.info("journal feed to %s stopped: %s", self.link.host, e)
                return

    def close(self) -> None:
        self._task.cancel()


class Replication:
    def __init__(
        self,
        app_id: str,
        wanted: int,
        self_node: str,
        snapshot: Snapshot,
        *,
        settling: Callable[[], bool] = lambda: False,
        on_members: Callable[[Members], None] = lambda m: None,
        probe: Probe | None = None,
    ) -> None:
        """``settling``: True while taking over (the members are not re-homed yet: the set
        does not change, so a lost member is replaced before it is dropped).
        ``on_members``: persist a new set. ``probe``: ask a member that is not linked (a
        higher term there means another coordinator was elected: step down; "nothing here"
        means it restarted: ``holds_nothing``) — as Raft's leader keeps calling every member,
        a coordinator back from a partition learns the new term from its own set."""
        self.app_id = app_id
        self.wanted = wanted
        self.self_node = self_node
        self._snapshot = snapshot
        self._settling = settling
        self._on_members = on_members
        self.members = Members()
        self.term = 0
        self._feeds: dict[str, _Feed] = {}
        self._acked: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._empty: set[str] = set()
        self._closed = False
        self._changed = asyncio.Event()
        self._probe = probe
        self._probed: dict[str, float] = {}
        self._probes: set[asyncio.Task[None]] = set()

    @property
    def ranks(self) -> tuple[str, ...]:
        """Every member of every set in force, best first (never released before the end)."""
        return self.members.everyone()

    def adopt(self, members: Members) -> None:
        """Start from the set this node knew as a replica (a takeover, a resume)."""
        self.members = members

    def update(self, staged: Sequence[WorkerLink], term: int) -> None:
        """Confirm an agreed change, take the next one-member step toward ``choose_replicas``
        over the staged workers, and keep one feed per reachable member."""
        if self.wanted <= 0 or self._closed:
            return
        if term != self.term:
            self.term, self._acked, self._versions = term, {}, {}
        me = self.self_node
        by_node = {k.node: k for k in staged if k.node != me and not k.closed}
        before = self.members
        if self.members.joint:
            versions = {**self._versions, me: self.members.version}
            if self.members.agreed(versions, self._empty):
                self.members = self.members.confirm()
        if not self.members.joint and not self._settling():
            current = [n for n in self.members.nodes if n != me]
            live = [n for n in by_node if n not in self._empty]
            wanted = choose_replicas(current, live, self.wanted)
            step = next_members(self.members.nodes, wanted, self._empty)
            if step is not None:
                self.members = self.members.change(step)
        changed = self.members != before
        if changed:
            log.info(
                "app %s: replica set v%d %s%s",
                self.app_id,
                self.members.version,
                ", ".join(self.members.nodes) or "(none)",
                " (joint)" if self.members.joint else "",
            )
            self._on_members(self.members)
            self._changed.set()
        members = set(self.members.everyone()) - {me}
        for node in list(self._feeds):
            if node not in members or self._feeds[node].link is not by_node.get(node):
                self._feeds.pop(node).close()
        for node in sorted(members):
            if node in self._feeds:
                if changed:
                    self._feeds[node].put(self._set_message())
            elif node in by_node:
                snap = self._snapshot(self.ranks)
                self._feeds[node] = _Feed(by_node[node], snap, self._set_message())
                self._acked.pop(node, None)
                self._versions.pop(node, None)
                log.info("app %s: %s keeps the journal", self.app_id, by_node[node].host)
            else:
                self._probe_member(node)

    def _probe_member(self, node: str) -> None:
        now = time.monotonic()
        if self._probe is None or now - self._probed.get(node, -_PROBE_EVERY) < _PROBE_EVERY:
            return
        self._probed[node] = now
        task = asyncio.ensure_future(self._probe(node))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    def _set_message(self) -> Replicas:
        m = self.members
        return Replicas(self.app_id, self.term, m.nodes, m.version, m.old or (), m.joint)

    def resync(self, node: str) -> None:
        """A replica asked for a snapshot (it saw a gap)."""
        feed = self._feeds.get(node)
        if feed is not None:
            feed.put(self._snapshot(self.ranks))
            feed.put(self._set_message())

    def append(self, msg: JournalAppend) -> None:
        for feed in self._feeds.values():
            feed.put(msg)

    def acked(self, node: str, seq: int, members: int = 0) -> None:
        """``node`` holds entries up to ``seq`` and set version ``members`` at this term."""
        if seq > self._acked.get(node, 0) or members > self._versions.get(node, -1):
            self._acked[node] = max(seq, self._acked.get(node, 0))
            self._versions[node] = max(members, self._versions.get(node, -1))
            self._empty.discard(node)
            self._changed.set()

    def holds_nothing(self, node: str) -> None:
        """Member ``node`` answered that it holds nothing of the app (its daemon restarted):
        its acknowledgements are void, and it counts as agreeing to its own removal."""
        if node in self.members.everyone():
            self._empty.add(node)
            self._acked.pop(node, None)
            self._versions.pop(node, None)
            self._changed.set()

    def drop(self, node: str) -> None:
        feed = self._feeds.pop(node, None)
        if feed is not None:
            feed.close()
            self._changed.set()

    def is_durable(self, seq: int) -> bool:
        """Whether a write quorum of every set in force holds entry ``seq`` (this node's own
        copy counts while it is a member: it journaled the entry first)."""
        return self.members.durable({**self._acked, self.self_node: seq}, seq)

    async def durable(self, seq: int, acting: Callable[[], bool] = lambda: True) -> bool:
        """Wait until entry ``seq`` is committed (True), or until the coordinator stops
        acting or closes the replication (False: nothing may be acknowledged)."""
        while True:
            if self.is_durable(seq):
                return True
            if self._closed or not acting():
                return False
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)

    async def settle(self, seq: int, timeout: float) -> None:
        """Wait (at most ``timeout``) until every fed replica holds entries up to ``seq``:
        said before "app ended", so each replica's copy of an ended app is whole."""

        async def all_acked() -> None:
            while any(self._acked.get(n, 0) < seq for n in self._feeds):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(all_acked(), timeout)
        except asyncio.TimeoutError:
            log.warning("app %s: a replica did not confirm the journal's end", self.app_id)

    def close(self) -> None:
        self._closed = True
        for task in self._probes:
            task.cancel()
        for feed in self._feeds.values():
            feed.close()
        self._feeds.clear()
        self._changed.set()
