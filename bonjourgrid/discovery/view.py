"""The live view of the grid as discovery sees it: volunteers and coordinator records.

Pure bookkeeping, no I/O: ``browse.py`` feeds it resolved records and removals, ``service.py``
our own records; readers get lists. A node is listed once: when one node shows in both the idle
and the worker list (a lost goodbye, or the instant of a swap) the record seen last wins.

A record is kept per link it was learned on (a multi-homed peer is seen on each of its links,
each time with that link's addresses); readers get one record per name, the one seen last, with
the addresses of every link it is still seen on (in link-name order), each scoped to its link.
Losing it on one link (a cable pulled) keeps it with the other links' addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .txt import CoordTxt, NodeTxt


@dataclass(frozen=True)
class Machine:
    """A volunteer of this grid. ``state`` is "idle" or "worker"; ``instance`` is the DNS-SD
    instance label of its record."""

    node: str
    host: str
    state: str
    addresses: tuple[str, ...]
    port: int
    txt: NodeTxt
    instance: str


@dataclass(frozen=True)
class CoordinatorRecord:
    """A ``_bjg-coord`` record: ``node`` coordinates ``app`` (informative; terms are settled
    over the control channel)."""

    node: str
    host: str
    app: str
    addresses: tuple[str, ...]
    port: int
    txt: CoordTxt


Record = Machine | CoordinatorRecord


@dataclass(frozen=True)
class _Entry:
    record: Record
    generation: int
    seq: int


class View:
    """Records keyed by (full service name in lower case, link; "" for our own), each tagged
    with the generation of the mDNS stack that saw it and a sequence number (higher = seen
    later)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._seq = 0
        self.generation = 0

    def put(self, name: str, record: Record, link: str = "") -> bool:
        """Adds or replaces ``name`` as seen on ``link``; True if the view changed."""
        key = (name.lower(), link)
        old = self._entries.get(key)
        self._seq += 1
        self._entries[key] = _Entry(record, self.generation, self._seq)
        return old is None or old.record != record

    def drop(self, name: str, link: str = "") -> bool:
        """Removes ``name`` as seen on ``link``; True if it was there."""
        return self._entries.pop((name.lower(), link), None) is not None

    def drop_older_than(self, generation: int, keep: set[str]) -> bool:
        """Removes entries seen before ``generation`` except names in ``keep``; True if any
        went."""
        stale = [
            k for k, e in self._entries.items() if e.generation < generation and k[0] not in keep
        ]
        for k in stale:
            del self._entries[k]
        return bool(stale)

    def clear(self) -> None:
        self._entries.clear()

    def _by_name(self) -> list[_Entry]:
        """One entry per name: the one seen last, with the addresses of all its links."""
        links: dict[str, list[tuple[str, _Entry]]] = {}
        for (name, link), e in self._entries.items():
            links.setdefault(name, []).append((link, e))
        out = []
        for seen in links.values():
            last = max((e for _, e in seen), key=lambda e: e.seq)
            addresses = tuple(
                dict.fromkeys(a for _, e in sorted(seen, key=_link) for a in e.record.addresses)
            )
            out.append(_Entry(replace(last.record, addresses=addresses), last.generation, last.seq))
        return out

    def machines(self) -> list[Machine]:
        latest: dict[str, _Entry] = {}
        for e in self._by_name():
            if isinstance(e.record, Machine):
                cur = latest.get(e.record.node)
                if cur is None or e.seq > cur.seq:
                    latest[e.record.node] = e
        found = [e.record for e in latest.values() if isinstance(e.record, Machine)]
        return sorted(found, key=lambda m: (m.host, m.node))

    def coordinators(self) -> list[CoordinatorRecord]:
        found = [e.record for e in self._by_name() if isinstance(e.record, CoordinatorRecord)]
        return sorted(found, key=lambda c: (c.app, c.txt.term, c.node))


def _link(seen: tuple[str, _Entry]) -> str:
    return seen[0]
