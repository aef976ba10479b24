"""Network-namespace plumbing of the test bed: ``ip`` calls, namespace lookup, and killing
every process in a namespace (a /proc scan, pidfd signals: no pid-reuse race).

Pure plumbing, no LAN concept: vlan.py builds the virtual LAN on top of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")
KILL_WAIT_S = 5.0
"""How long close()/kill9() wait for SIGKILLed processes to leave a namespace."""


class VlanError(RuntimeError):
    """A namespace, link or process operation of the test bed failed."""


def ip(*args: str, input: str | None = None) -> None:
    res = subprocess.run(["ip", *args], input=input, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise VlanError(f"ip {' '.join(args)}: {res.stderr.strip() or res.returncode}")


def ip_batch(netns: str, commands: Sequence[str]) -> None:
    ip("-n", netns, "-batch", "-", input="\n".join(commands) + "\n")


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def delete_netns(names: Iterable[str]) -> None:
    present = [n for n in names if netns_exists(n)]
    if present:
        # -force: go on past a namespace that vanished meanwhile; leftovers are checked by callers.
        lines = "".join(f"netns del {n}\n" for n in present)
        subprocess.run(["ip", "-force", "-batch", "-"], input=lines, capture_output=True, text=True)


def pids_by_netns(inodes: set[int]) -> dict[int, list[int]]:
    """Pids of the processes in each of the network namespaces ``inodes`` (a /proc scan)."""
    found: dict[int, list[int]] = {}
    if not inodes:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:  # gone, a zombie, or not ours to see
            continue
        if ino in inodes:
            found.setdefault(ino, []).append(int(entry.name))
    return found


def sigkill_in(pid: int, inodes: set[int]) -> None:
    """SIGKILL ``pid`` if it is still a process in one of ``inodes`` (pidfd: no pid-reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def kill_until_empty(inodes: set[int], procs: list[subprocess.Popen[Any]]) -> list[int]:
    """SIGKILL everything in ``inodes`` and the tracked ``procs``; reap; return survivors."""
    for proc in procs:
        # Our unreaped children: their pids cannot be reused, so killing by pid is safe. This
        # also catches one still between fork and entering the namespace.
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + KILL_WAIT_S
    pause = 0.002
    while True:
        pids = [p for ps in pids_by_netns(inodes).values() for p in ps]
        for pid in pids:
            sigkill_in(pid, inodes)
        for proc in procs:
            proc.poll()
        if not pids and all(p.returncode is not None for p in procs):
            return []
        if time.monotonic() > deadline:
            return pids + [p.pid for p in procs if p.returncode is None]
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
