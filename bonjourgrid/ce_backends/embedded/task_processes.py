"""Every process of one running attempt: stop, continue, measure and kill them all.

Which processes those are, best first: the members of the attempt's cgroup (``cgroups.py``:
kept by the kernel, double forks and ``setsid`` included); else every process of its slot
account (a helper becomes the uid and signals ``-1``); else its process group, every process
whose session is the task's, and every descendant of the process the daemon started. Under
bubblewrap (a non-root daemon) that last walk is complete: an orphan in the task's PID
namespace is reparented to bwrap's init, a descendant of that process, so double forks and
``setsid`` stay in the tree. Only an unisolated task (``--allow-unisolated``) that
double-forks *and* calls setsid is out of reach.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

import psutil

from bonjourgrid.ce_backends.embedded.cgroups import TaskCgroup
from bonjourgrid.ce_backends.embedded.isolation import signal_all_of

_STOP_ROUNDS = 20
"""Passes over a task's processes (without a freezer) until none is left running."""


class TaskProcesses:
    """The processes of one attempt (see the module docstring for which ones)."""

    def __init__(self, leader: int, *, cgroup: TaskCgroup | None, uid: int | None) -> None:
        self.leader = leader
        self.cgroup = cgroup
        self.uid = uid

    def members(self) -> list[int]:
        if self.cgroup is not None:
            return self.cgroup.members()
        found = []
        for p in psutil.process_iter(["uids"]):
            with contextlib.suppress(psutil.Error, OSError):
                if self.uid is not None:
                    if p.info["uids"] and p.info["uids"].real == self.uid:
                        found.append(p.pid)
                elif p.pid == self.leader or os.getsid(p.pid) == self.leader:
                    found.append(p.pid)
        if self.uid is None:  # children that left the session but still descend from it
            with contextlib.suppress(psutil.Error):
                found += [c.pid for c in psutil.Process(self.leader).children(recursive=True)]
        return sorted(set(found))

    def rss(self) -> int:
        """Resident bytes of all the task's processes."""
        total = 0
        for pid in self.members():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` (SIGSTOP/SIGCONT) to every process of the task."""
        _signal_group(self.leader, sig)
        if self.cgroup is not None:
            self.cgroup.signal_all(sig)
        elif self.uid is not None:
            signal_all_of(self.uid, sig)
        else:
            self._signal_members(sig)

    def _signal_members(self, sig: int) -> None:
        for _ in range(_STOP_ROUNDS if sig == signal.SIGSTOP else 1):
            members = self.members()
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            if sig != signal.SIGSTOP or all(_stopped(pid) for pid in members):
                return  # a stopped process cannot fork: the list is complete

    def kill_all(self) -> None:
        """SIGKILL every process of the task; blocking (run it in a thread). With a cgroup or
        a slot account, no process of the task is left when it returns."""
        _signal_group(self.leader, signal.SIGKILL)
        _signal_group(self.leader, signal.SIGCONT)
        if self.cgroup is not None:
            self.cgroup.kill()
        elif self.uid is not None:
            signal_all_of(self.uid, signal.SIGKILL)
        else:
            self._signal_members(signal.SIGKILL)
            self._signal_members(signal.SIGCONT)


def _stopped(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class TaskControl:
    """A running task's handle for the owner policy: stop and continue all its processes.

    Threading: call from the event loop that runs the task.
    """

    processes: TaskProcesses | None = None
    suspended_since: float | None = None
    suspended_total: float = 0.0

    @property
    def pgid(self) -> int | None:
        return self.processes.leader if self.processes is not None else None

    @property
    def suspended(self) -> bool:
        return self.suspended_since is not None

    def attach(self, processes: TaskProcesses) -> None:
        """The task's processes exist; stopped at once if suspended before it started."""
        self.processes = processes
        if self.suspended:
            processes.signal_all(signal.SIGSTOP)

    def detach(self) -> None:
        self.processes = None

    def suspend(self) -> None:
        if self.suspended:
            return
        self.suspended_since = time.monotonic()
        if self.processes is not None:
            self.processes.signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        if self.suspended_since is None:
            return
        self.suspended_total += time.monotonic() - self.suspended_since
        self.suspended_since = None
        if self.processes is not None:
            self.processes.signal_all(signal.SIGCONT)

    def suspended_for(self, now: float) -> float:
        """Seconds spent suspended so far."""
        current = now - self.suspended_since if self.suspended_since is not None else 0.0
        return self.suspended_total + current
