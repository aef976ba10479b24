"""Bounds on unauthenticated connections to the control port (issue 12, item 7).

Anybody on the LAN can open TCP connections to a volunteer's control port; only a grid-key
holder gets past the handshake. Until then a connection is *in handshake*, and those are
bounded so that a flood (thousands of connections, idle ones that never send a byte, slowloris
ones that trickle bytes) neither exhausts the daemon's file descriptors nor locks its
coordinator out:

- at most ``per_peer`` handshakes in progress per peer IP address: more from that address are
  closed at once;
- at most ``overall`` in progress in all: when full, the *oldest* handshake of the address with
  the most in progress is closed to make room for a newcomer from an address with fewer, so a
  flood from many addresses cannot keep a legitimate peer's (quick) handshake out;
- each handshake has a deadline (``serve(handshake_timeout=...)``, 5 s).

Authenticated channels are not counted here. Refusals are logged through :class:`RateLimitedLog`
(a flood must not fill the disk with log lines either). Pure: time is passed in.
"""

from __future__ import annotations

import itertools
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("bonjourgrid.control")

MAX_HANDSHAKES = 64
"""Handshakes in progress at once, all peers together (a handshake takes milliseconds)."""
MAX_HANDSHAKES_PER_PEER = 8
"""Handshakes in progress at once from one IP address: a daemon opens a few channels to a
peer at a time (a worker link, replication, a vote), never this many at once."""


@dataclass
class Ticket:
    """One admitted handshake; give it back with :meth:`HandshakeGate.release`."""

    peer: str
    order: int
    close: Callable[[], None] = field(repr=False)
    released: bool = False


class HandshakeGate:
    """Counts handshakes in progress per peer and overall; see the module docstring."""

    def __init__(
        self, *, overall: int = MAX_HANDSHAKES, per_peer: int = MAX_HANDSHAKES_PER_PEER
    ) -> None:
        if overall < 1 or per_peer < 1:
            raise ValueError("handshake limits must be at least 1")
        self.overall = overall
        self.per_peer = per_peer
        self._by_peer: dict[str, list[Ticket]] = {}
        self._count = 0
        self._order = itertools.count()

    @property
    def in_progress(self) -> int:
        return self._count

    def admit(self, peer: str, close: Callable[[], None]) -> tuple[Ticket | None, Ticket | None]:
        """(ticket, evicted): ticket None means refuse this connection; ``evicted`` is an
        older handshake this one displaced (its ``close`` was called, it is released)."""
        mine = self._by_peer.get(peer, [])
        if len(mine) >= self.per_peer:
            return None, None
        evicted = None
        if self._count >= self.overall:
            busiest = max(self._by_peer.values(), key=lambda ts: (len(ts), -ts[0].order))
            if len(busiest) <= len(mine):
                return None, None
            evicted = busiest[0]  # the oldest of the busiest address
            self.release(evicted)
            evicted.close()
        ticket = Ticket(peer, next(self._order), close)
        self._by_peer.setdefault(peer, []).append(ticket)
        self._count += 1
        return ticket, evicted

    def release(self, ticket: Ticket) -> None:
        """The handshake ended (either way). Idempotent."""
        if ticket.released:
            return
        ticket.released = True
        tickets = self._by_peer[ticket.peer]
        tickets.remove(ticket)
        if not tickets:
            del self._by_peer[ticket.peer]
        self._count -= 1


class RateLimitedLog:
    """At most ``burst`` lines per ``window`` seconds; the rest are counted and summed up in
    the next line that gets through."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, window: float = 10.0) -> None:
        self._log = logger
        self.burst = burst
        self.window = window
        self._window_start = float("-inf")
        self._sent = 0
        self.suppressed = 0

    def log(self, now: float, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless over the rate; True if it was logged."""
        if now - self._window_start >= self.window:
            self._window_start, self._sent = now, 0
        if self._sent >= self.burst:
            self.suppressed += 1
            return False
        self._sent += 1
        if self.suppressed:
            msg += " (and %d more like it not logged, rate limit)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self._log.log(level, msg, *args)
        return True


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (a daemon holding many
    channels and task files should not run out at the default 1024); the (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, e)
    return soft, hard
