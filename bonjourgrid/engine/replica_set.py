"""The coordinator's side of replication, without I/O: which nodes keep the journal (the
replica set, changed one member at a time), what each acknowledged, and when an entry is
committed. The shell keeps the feeds (``Feed``/``Unfeed``/``Resync``/``MembersChanged``
actions) and reports acknowledgements; the quorum rule is the ``Quorum`` policy given.
"""

from __future__ import annotations

from collections.abc import Sequence

from bonjourgrid.engine.app_events import Action, Feed, MembersChanged, Note, Probe, Unfeed
from bonjourgrid.engine.policy import Quorum
from bonjourgrid.engine.scheduling import choose_replicas
from bonjourgrid.faulttolerance.quorum import Members, next_members

PROBE_EVERY = 1.0
"""Seconds between two probes of a member this coordinator does not reach."""


class ReplicaSet:
    def __init__(self, wanted: int, me: str, quorum: Quorum, members: Members) -> None:
        self.wanted = wanted
        self.me = me
        self.quorum = quorum
        self.members = members
        self.term = 0
        self.fed: set[str] = set()
        self.acks: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.empty: set[str] = set()
        self._probed: dict[str, float] = {}
        self.closed = False

    @property
    def ranks(self) -> tuple[str, ...]:
        """Every member of every set in force, best first (never released before the end)."""
        return self.members.everyone()

    def update(self, now: float, staged: Sequence[str], term: int, settling: bool) -> list[Action]:
        """Confirm an agreed change, take the next one-member step toward ``choose_replicas``
        over the ``staged`` (ready, linked) workers, keep one feed per reachable member, and
        probe the unreachable ones. ``settling``: taking over (the set does not change)."""
        if self.wanted <= 0 or self.closed:
            return []
        if term != self.term:
            self.term, self.acks, self.versions = term, {}, {}
        me = self.me
        linked = [n for n in staged if n != me]
        before = self.members
        if self.members.joint:
            versions = {**self.versions, me: self.members.version}
            if self.members.agreed(versions, self.empty):
                self.members = self.members.confirm()
            elif all(n in self.empty for n in self.members.everyone() if n != me):
                # Every member of every set in force answered that it holds nothing (each
                # restarted, and a machine that coordinated the app resumes it instead): the
                # change can never be agreed, none of them can campaign, and this journal is
                # the only copy. Start the set again from none (then () -> (a,), as at first).
                self.members = Members(self.members.version + 1, ())
        if not self.members.joint and not settling:
            current = [n for n in self.members.nodes if n != me]
            live = [n for n in linked if n not in self.empty]
            wanted = choose_replicas(current, live, self.wanted)
            step = next_members(self.members.nodes, wanted, self.empty)
            if step is not None:
                self.members = self.members.change(step)
        out: list[Action] = []
        changed = self.members != before
        if changed:
            m = self.members
            joint = " (joint)" if m.joint else ""
            nodes = ", ".join(m.nodes) or "(none)"
            out.append(Note(f"replica set v{m.version} {nodes}{joint}"))
        members = set(self.members.everyone()) - {me}
        for node in sorted(self.fed):
            if node not in members or node not in linked:
                self.fed.discard(node)
                out.append(Unfeed(node))
        for node in sorted(members):
            if node in self.fed:
                continue
            if node in linked:
                self.fed.add(node)
                self.acks.pop(node, None)
                self.versions.pop(node, None)
                out.append(Feed(node))
            elif now - self._probed.get(node, -PROBE_EVERY) >= PROBE_EVERY:
                self._probed[node] = now
                out.append(Probe(node))
        if changed:
            out.append(MembersChanged(self.members, term))
        return out

    def acked(self, node: str, seq: int, version: int) -> None:
        """``node`` holds entries up to ``seq`` and set ``version`` at this term."""
        self.acks[node] = max(seq, self.acks.get(node, 0))
        self.versions[node] = max(version, self.versions.get(node, -1))
        self.empty.discard(node)

    def holds_nothing(self, node: str) -> None:
        """Member ``node`` holds nothing of the app (it restarted): its acknowledgements are
        void, and it counts as agreeing to its own removal."""
        if node in self.members.everyone():
            self.empty.add(node)
            self.acks.pop(node, None)
            self.versions.pop(node, None)

    def drop(self, node: str) -> list[Action]:
        if node in self.fed:
            self.fed.discard(node)
            return [Unfeed(node)]
        return []

    def durable(self, seq: int) -> bool:
        """Whether entry ``seq`` is committed (``Quorum``; this node's own copy counts)."""
        return self.quorum.durable(self.members, {**self.acks, self.me: seq}, seq)

    def settled(self, seq: int) -> bool:
        """Every fed replica holds entries up to ``seq`` (said before "app ended")."""
        return all(self.acks.get(n, 0) >= seq for n in self.fed)
