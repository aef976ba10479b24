"""Where owner activity comes from: one small interface, swappable sources.

``ActivitySource.sample(now)`` returns an ``Activity``. It may block briefly (it reads a file,
or runs ``xprintidle``); the driver calls it in a worker thread unless the source says
``may_block = False`` (it reads only /proc, /dev and sysfs). Two sources:

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
GLOB_REFRESH_S = 10.0
"""How long a list of terminal devices is reused: a terminal opened since is seen this late."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Units of the CPU times in /proc/stat and /proc/<pid>/stat (USER_HZ, 100 on Linux)."""


class ActivitySource(Protocol):
    def sample(self, now: float) -> Activity:
        """The owner's activity now (``now``: monotonic seconds, for rate computations)."""
        ...


class FileActivitySource:
    """Owner activity injected through a file: ``busy`` or ``idle`` (missing: idle)."""

    may_block = True
    """The file may be anywhere (a network file system): read it in a thread."""

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

    A sample must cost next to nothing, since an idle volunteer takes one every few seconds
    for as long as it runs: it reads /proc/stat, the grid root's own /proc files and those of
    its live descendants (found through ``/proc/<pid>/task/<tid>/children``, not by scanning
    every process of the machine, which is what psutil's ``children()`` does), and it stats
    the terminal devices, whose globs are expanded again only every ``GLOB_REFRESH_S``.
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
        self._devices: list[str] = []
        self._devices_at: float | None = None  # monotonic time of the last glob expansion

    @property
    def may_block(self) -> bool:
        """Only ``xprintidle`` (a subprocess, up to 1 s) may block; /proc and /dev do not."""
        return self._xprintidle is not None and bool(os.environ.get("DISPLAY"))

    def sample(self, now: float) -> Activity:
        busy, grid = machine_busy_seconds(), self.grid_cpu_seconds()
        load = 0.0
        if self._last is not None:
            then, busy0, grid0 = self._last
            if now > then:
                load = max(0.0, (busy - busy0) - (grid - grid0)) / (now - then)
        self._last = (now, busy, grid)
        return Activity(owner_load=load, input_idle=self.input_idle(now))

    def grid_cpu_seconds(self) -> float:
        """CPU seconds used so far by the grid's processes, finished children included.

        The root's and every live descendant's own time plus that of their reaped children:
        a task's shell that reaps its commands keeps their CPU in its own counters.
        """
        try:
            tree = process_tree(self.grid_root)
        except OSError:
            return psutil_tree_cpu_seconds(self.grid_root)
        total = 0.0
        for pid in tree:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += proc_cpu_seconds(pid)
        return total

    def input_idle(self, now: float | None = None) -> float | None:
        """Seconds since the last keyboard/mouse input seen, or None if nothing tells."""
        ages: list[float] = []
        wall = time.time()
        for dev in self._terminal_devices(time.monotonic() if now is None else now):
            with contextlib.suppress(OSError):
                ages.append(max(0.0, wall - os.stat(dev).st_atime))
        x = self._x_idle()
        if x is not None:
            ages.append(x)
        return min(ages) if ages else None

    def _terminal_devices(self, now: float) -> list[str]:
        """The devices the globs name, expanded again every ``GLOB_REFRESH_S`` (a listing of
        /dev costs more than stat-ing the few dozen terminals it finds)."""
        if self._devices_at is None or not 0 <= now - self._devices_at < GLOB_REFRESH_S:
            self._devices = [d for pattern in self.terminals for d in glob.glob(pattern)]
            self._devices_at = now
        return self._devices

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
    """CPU seconds all CPUs spent on anything but idling (and waiting for I/O), since boot.

    The first line of /proc/stat: user, nice, system, irq, softirq and steal ticks (user
    already holds guest time, so guest is not added again); psutil where /proc/stat is not.
    """
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
        if fields[0] != b"cpu":
            raise ValueError("/proc/stat does not start with the cpu line")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(x) for x in (fields[1:9] + [b"0"] * 8)[:8]
        )
        return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        pass
    t = psutil.cpu_times()
    idle = float(t.idle) + float(getattr(t, "iowait", 0.0))
    guests = float(getattr(t, "guest", 0.0)) + float(getattr(t, "guest_nice", 0.0))
    return float(sum(t)) - idle - guests


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants, from ``/proc/<pid>/task/<tid>/children`` (the
    kernel's own lists, so the cost grows with the tree, not with the machine's processes).
    OSError when ``root`` is gone or the kernel keeps no such lists (CONFIG_PROC_CHILDREN)."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        raise OSError(f"no children list for process {root}")
    found, todo = [root], [root]
    seen = {root}
    while todo:
        pid = todo.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split() if int(k) not in seen]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue  # a thread that ended meanwhile
            seen.update(kids)
            found += kids
            todo += kids
    return found


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of the children it reaped (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        # Fields after the command name (which may hold spaces and parentheses): 14-17 of
        # proc(5) are utime, stime, cutime, cstime, here at 11-14 (field 3 is at 0).
        rest = f.read().rpartition(b")")[2].split()
    return sum(int(x) for x in rest[11:15]) / CLOCK_TICKS


def psutil_tree_cpu_seconds(root: int) -> float:
    """The same total through psutil (a scan of every process): where /proc lacks the lists."""
    try:
        proc = psutil.Process(root)
        t = proc.cpu_times()
        total = float(t.user + t.system + t.children_user + t.children_system)
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0.0
    for child in children:
        with contextlib.suppress(psutil.Error):
            c = child.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
    return total
