"""Where owner activity comes from: one small interface, swappable sources.

``ActivitySource.sample(now)`` returns an ``Activity``. It may block briefly (it reads /proc or
a file); the driver calls it in a worker thread. Two sources:

- ``PsutilActivitySource``: the real machine. Owner load = CPU time the whole machine spent
  busy, minus the CPU time of the grid's own processes (the daemon and every process under it,
  reaped ones included), per second of wall time. Keyboard/mouse idleness = time since the
  newest access time of the terminal devices (``/dev/tty[0-9]*``, ``/dev/pts/*``): the tty
  layer stamps a terminal on input, which is what ``w`` and HTCondor's startd read for
  console idleness. Graphical sessions are read through ``xprintidle`` when it is installed
  and ``DISPLAY`` is set; otherwise input on a graphical session is not seen (docs say so).
- ``FileActivitySource``: a file (e.g. ``<state dir>/owner-activity``) whose content is
  ``busy`` or ``idle``. Namespace hosts share one /proc, so the virtual LAN injects owner
  activity per host this way; a missing or empty file means idle.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import psutil

from bonjourgrid.policy.state import Activity

log = logging.getLogger(__name__)

TERMINAL_GLOBS = ("/dev/tty[0-9]*", "/dev/pts/[0-9]*")
"""Devices whose access time the kernel stamps on keyboard input (text consoles, terminals)."""


class ActivitySource(Protocol):
    def sample(self, now: float) -> Activity:
        """The owner's activity now (``now``: monotonic seconds, for rate computations)."""
        ...


class FileActivitySource:
    """Owner activity injected through a file: ``busy`` or ``idle`` (missing: idle)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._complained = False

    def sample(self, now: float) -> Activity:
        try:
            word = self.path.read_text().strip().lower()
        except FileNotFoundError:
            word = ""
        except OSError as e:
            log.warning("owner activity file %s unreadable (%s): taken as busy", self.path, e)
            return Activity(busy=True)
        if word in ("", "idle"):
            return Activity(busy=False)
        if word != "busy" and not self._complained:
            self._complained = True
            log.warning("owner activity file %s says %r: taken as busy", self.path, word)
        return Activity(busy=True)


class PsutilActivitySource:
    """The owner's CPU load and input idleness on this machine (see the module docstring).

    ``grid_root`` is the pid whose process tree is the grid's own (the daemon: tasks are its
    descendants); ``terminals`` the device globs read for input idleness.
    """

    def __init__(
        self,
        grid_root: int | None = None,
        *,
        terminals: Sequence[str] = TERMINAL_GLOBS,
        use_x: bool = True,
    ) -> None:
        self.grid_root = os.getpid() if grid_root is None else grid_root
        self.terminals = tuple(terminals)
        self._xprintidle = shutil.which("xprintidle") if use_x else None
        self._last: tuple[float, float, float] | None = None  # (now, machine busy, grid)

    def sample(self, now: float) -> Activity:
        busy, grid = machine_busy_seconds(), self.grid_cpu_seconds()
        load = 0.0
        if self._last is not None:
            then, busy0, grid0 = self._last
            if now > then:
                load = max(0.0, (busy - busy0) - (grid - grid0)) / (now - then)
        self._last = (now, busy, grid)
        return Activity(owner_load=load, input_idle=self.input_idle())

    def grid_cpu_seconds(self) -> float:
        """CPU seconds used so far by the grid's processes, finished children included."""
        try:
            root = psutil.Process(self.grid_root)
            t = root.cpu_times()
            total = float(t.user + t.system + t.children_user + t.children_system)
            children = root.children(recursive=True)
        except psutil.Error:
            return 0.0
        for child in children:
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return total

    def input_idle(self) -> float | None:
        """Seconds since the last keyboard/mouse input seen, or None if nothing tells."""
        ages: list[float] = []
        wall = time.time()
        for pattern in self.terminals:
            for dev in glob.glob(pattern):
                with contextlib.suppress(OSError):
                    ages.append(max(0.0, wall - os.stat(dev).st_atime))
        x = self._x_idle()
        if x is not None:
            ages.append(x)
        return min(ages) if ages else None

    def _x_idle(self) -> float | None:
        if self._xprintidle is None or not os.environ.get("DISPLAY"):
            return None
        try:
            out = subprocess.run(
                [self._xprintidle], capture_output=True, text=True, timeout=1, check=True
            ).stdout
            return int(out.strip()) / 1000.0
        except (OSError, subprocess.SubprocessError, ValueError):
            return None


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent on anything but idling (and waiting for I/O), since boot."""
    t = psutil.cpu_times()
    idle = float(t.idle) + float(getattr(t, "iowait", 0.0))
    guests = float(getattr(t, "guest", 0.0)) + float(getattr(t, "guest_nice", 0.0))
    return float(sum(t)) - idle - guests
