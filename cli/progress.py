"""Progress of an app on stderr, readable at 80 columns.

On a terminal: a live block of up to three lines — the bar with done/total and the ETA; one
count per state and the workers; the waiting reason on its own line. Not on a terminal
(piped, or ``--json``): a plain line when something changes, at most every
``PLAIN_EVERY`` seconds, and the waiting reason once per change. A cancelled or failed app
never looks complete: the bar fills with done tasks only and ends with the outcome.
``describe``, ``bar_line`` and ``eta`` are pure (time passed in).
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from bonjourgrid.daemon.local_messages import Progress as AppProgress

PLAIN_EVERY = 5.0
"""Seconds between plain progress lines (a CI log wants a heartbeat, not a flood)."""

_STATES = ("done", "running", "waiting", "failed")
_NEVER_RAN = ("cancelled", "skipped")
"""Counted apart from failed (results.json's states), shown once there are any."""


def counts(p: AppProgress) -> dict[str, int]:
    """One count per state people think in: waiting = pending + ready; cancelled and skipped
    (never ran: the app was cancelled, or a predecessor failed) apart from failed."""

    def n(state: str) -> int:
        v = p.counts.get(state, 0)
        return v if isinstance(v, int) and v >= 0 else 0

    return {
        "done": n("done"),
        "running": n("running"),
        "waiting": n("pending") + n("ready"),
        "failed": n("failed"),
        "cancelled": n("cancelled"),
        "skipped": n("skipped"),
    }


def total(p: AppProgress) -> int:
    return sum(counts(p).values())


def eta(done: int, remaining: int, elapsed: float) -> float | None:
    """Seconds left at the rate so far; None until a task is done (no rate yet)."""
    if remaining <= 0:
        return 0.0
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed / done * remaining


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def describe(p: AppProgress) -> str:
    """The counts line: ``done 3  running 2  waiting 5  failed 0  workers 2`` (and
    ``cancelled N``, ``skipped N`` before workers once there are any)."""
    c = counts(p)
    shown = [*_STATES, *(k for k in _NEVER_RAN if c[k])]
    return "  ".join(f"{k} {c[k]}" for k in shown) + f"  workers {p.workers}"


def bar_line(p: AppProgress, elapsed: float, width: int) -> str:
    """``name ━━━━━━━━───── 12/40  ETA 01:20`` in at most ``width`` columns."""
    c = counts(p)
    n = total(p)
    done = c["done"]
    if p.ended:
        tail = f"{done}/{n}  {p.outcome or 'ended'} {clock(elapsed)}"
    else:
        stuck = bool(p.waiting) and not c["running"]  # no rate means anything now
        over = c["failed"] + c["cancelled"] + c["skipped"]
        left = None if stuck else eta(done, n - done - over, elapsed)
        tail = f"{done}/{n}  ETA {clock(left)}"
    name = p.name[: max(4, width // 4)]
    room = width - len(name) - len(tail) - 2
    if room < 5:
        return f"{name} {tail}"[:width]
    filled = room * done // n if n else 0
    if p.ended and p.outcome == "finished" and done == n:
        filled = room
    return f"{name} {'━' * filled}{'─' * (room - filled)} {tail}"


class ProgressView:
    """A live block when ``live`` (stderr is a terminal), else plain lines."""

    def __init__(self, console: Console, *, live: bool, now: float | None = None) -> None:
        self.console = console
        self.live = live
        self.started = time.monotonic() if now is None else now
        self._live: Live | None = None
        self._last_plain = ""
        self._last_plain_at = float("-inf")
        self._last_waiting = ""
        self._last: AppProgress | None = None

    def __enter__(self) -> ProgressView:
        if self.live:
            self._live = Live(console=self.console, auto_refresh=True, transient=False)
            self._live.__enter__()
        return self

    def render(self, p: AppProgress, now: float) -> list[str]:
        width = max(20, min(self.console.width - 1, 200))  # the last column may wrap
        lines = [bar_line(p, now - self.started, width), describe(p)[:width]]
        if p.waiting and not p.ended:
            lines.append(f"waiting: {p.waiting}"[: width * 2])
        return lines

    def update(self, p: AppProgress, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._last = p
        if self._live is not None:
            lines = self.render(p, now)
            self._live.update(Group(*(Text(line, no_wrap=i < 2) for i, line in enumerate(lines))))
            return
        if p.waiting and p.waiting != self._last_waiting and not p.ended:
            self.console.print(Text(f"bjgrid: app {p.app} waiting: {p.waiting}"), soft_wrap=True)
        self._last_waiting = p.waiting
        self._plain(p, now, force=p.ended)

    def tick(self, now: float | None = None) -> None:
        """Called every second or so: a change held back by ``PLAIN_EVERY`` is printed once
        due, even when no new progress arrives (the last change of a quiet app)."""
        if self._live is None and self._last is not None:
            self._plain(self._last, time.monotonic() if now is None else now, force=False)

    def _plain(self, p: AppProgress, now: float, *, force: bool) -> None:
        line = f"{p.app} {p.role} {describe(p)}"
        due = now - self._last_plain_at >= PLAIN_EVERY
        if line != self._last_plain and (due or force):
            self.console.print(Text(line), soft_wrap=True)
            self._last_plain, self._last_plain_at = line, now

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(t, e, tb)
