"""One cgroup per task attempt: every process of the task frozen, killed, capped and counted.

A root daemon makes, for each attempt, a cgroup named after the attempt's slot account
(``slot-<uid>``, leased host-wide, so no two tasks ever share one) or after itself
(``pid<daemon-pid>-<n>``) under a ``bjgrid`` folder beside its own cgroup, in every hierarchy
the host mounts that it can use:

- cgroup v2 (``cgroup2``): ``cgroup.kill`` kills every member at once, ``cgroup.freeze``
  freezes them; ``memory.max`` / ``pids.max`` where those controllers can be enabled;
- cgroup v1: ``freezer`` (FROZEN, then SIGKILL every member, then THAWED), ``memory``
  (``memory.limit_in_bytes``, swap included where accounted) and ``pids`` (``pids.max``).

The task's child joins every one of them before it execs (``procs_files``), so its
descendants, double-forked or ``setsid``-escaped, stay members: the kernel keeps the list,
nobody can leave it without write access to another cgroup's ``cgroup.procs`` (root's).
``layout()`` finds the hierarchies once per process; anything not usable is simply left out
(``layout()`` is None when no hierarchy is), and the sandbox falls back to the slot-account
sweep. Linux only; every call here is blocking file I/O on cgroupfs (microseconds).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PARENT = "bjgrid"
"""Folder of the tasks' cgroups, beside the daemon's own cgroup in each hierarchy."""
_SETTLE = 10.0
"""Seconds a kill or freeze may take before it is reported as stuck (a process in D state)."""
_POLL = 0.002
_counter = itertools.count(1)


@dataclass(frozen=True)
class Hierarchy:
    version: int
    """1 or 2."""
    parent: str
    """The ``bjgrid`` folder of this hierarchy (created)."""
    controllers: frozenset[str]
    """What it does for a task: ``freezer`` (v2: always, with kill), ``memory``, ``pids``."""


@dataclass(frozen=True)
class Layout:
    hierarchies: tuple[Hierarchy, ...]

    def has(self, controller: str) -> bool:
        return any(controller in h.controllers for h in self.hierarchies)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, options) of every cgroup mount."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[1].replace("\\040", " "), parts[2], set(parts[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _num, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                paths[c] = path
    return paths


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _make_parent(mount: str, own: str) -> str:
    parent = os.path.join(mount, own.lstrip("/"), PARENT)
    os.makedirs(parent, exist_ok=True)
    return parent


def _v2_hierarchy(mount: str, own: str) -> Hierarchy:
    parent = _make_parent(mount, own)
    if not os.path.exists(os.path.join(parent, "cgroup.kill")):
        raise OSError(errno.ENOTSUP, "cgroup v2 without cgroup.kill (kernel < 5.14)")
    wanted = {"memory", "pids"}
    here = os.path.dirname(parent)
    for folder in (here, parent):  # enable where the no-internal-process rule allows it
        have = set(_read(os.path.join(folder, "cgroup.controllers")).split())
        for c in sorted(wanted & have):
            with contextlib.suppress(OSError):
                _write(os.path.join(folder, "cgroup.subtree_control"), f"+{c}")
    enabled = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
    return Hierarchy(2, parent, frozenset({"freezer"} | (wanted & enabled)))


@functools.cache
def layout() -> Layout | None:
    """The hierarchies this process can make task cgroups in (found once), or None."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError:
        return None
    found: list[Hierarchy] = []
    covered: set[str] = set()
    for mount, fstype, _opts in mounts:  # v2 first: one folder does freeze, kill and more
        if fstype == "cgroup2" and "" in own:
            try:
                h = _v2_hierarchy(mount, own[""])
            except OSError as e:
                log.info("cgroup v2 at %s not usable for tasks: %s", mount, e)
                continue
            found.append(h)
            covered |= h.controllers
            break
    for mount, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        for ctrl in ("freezer", "memory", "pids"):
            if ctrl in opts and ctrl not in covered and ctrl in own:
                try:
                    found.append(Hierarchy(1, _make_parent(mount, own[ctrl]), frozenset({ctrl})))
                except OSError as e:
                    log.info("cgroup v1 %s at %s not usable for tasks: %s", ctrl, mount, e)
                    continue
                covered.add(ctrl)
    if not found:
        return None
    result = Layout(tuple(found))
    _remove_stale(result)
    return result


def _remove_stale(lay: Layout) -> None:
    """Kill and remove the task cgroups a crashed daemon of this host left behind."""
    for h in lay.hierarchies:
        for name in os.listdir(h.parent):
            if name.startswith("pid") and "-" in name:
                owner = name[3:].split("-", 1)[0]
                if owner.isdigit() and not _alive(int(owner)):
                    TaskCgroup(name, lay).destroy()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class TaskCgroup:
    """The cgroups of one attempt (one folder per usable hierarchy)."""

    name: str
    layout: Layout
    dirs: dict[str, str] = field(default_factory=dict)
    """Controller -> folder (v2: one folder for all its controllers)."""

    def __post_init__(self) -> None:
        for h in self.layout.hierarchies:
            for c in h.controllers:
                self.dirs[c] = os.path.join(h.parent, self.name)

    @classmethod
    def create(
        cls, lay: Layout, *, uid: int | None, memory_bytes: int, pids_max: int
    ) -> TaskCgroup:
        """Make the attempt's cgroups (a leftover of the same slot account is killed and
        replaced) and set the limits (0: none). OSError if they cannot be made."""
        name = f"slot-{uid}" if uid is not None else f"pid{os.getpid()}-{next(_counter)}"
        cg = cls(name, lay)
        cg.destroy()  # leftovers of a crash (a leased slot's cgroup is ours alone)
        try:
            for d in cg.folders():
                os.mkdir(d, 0o755)
            cg._limit(memory_bytes, pids_max)
        except OSError:
            cg.destroy()
            raise
        return cg

    def folders(self) -> list[str]:
        return sorted(set(self.dirs.values()))

    def procs_files(self) -> tuple[str, ...]:
        """What the child writes its pid to before exec, to join every hierarchy."""
        return tuple(os.path.join(d, "cgroup.procs") for d in self.folders())

    def _limit(self, memory_bytes: int, pids_max: int) -> None:
        mem = self.dirs.get("memory")
        if mem is not None and memory_bytes > 0:
            if mem == self.dirs.get("freezer"):  # v2
                _write(os.path.join(mem, "memory.max"), str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(os.path.join(mem, "memory.swap.max"), "0")
            else:
                _write(os.path.join(mem, "memory.limit_in_bytes"), str(memory_bytes))
                with contextlib.suppress(OSError):  # only where swap is accounted
                    _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(memory_bytes))
        pids = self.dirs.get("pids")
        if pids is not None and pids_max > 0:
            _write(os.path.join(pids, "pids.max"), str(pids_max))

    def _v2(self) -> str | None:
        d = self.dirs.get("freezer")
        return d if d is not None and os.path.exists(os.path.join(d, "cgroup.kill")) else None

    def members(self) -> list[int]:
        """Every process of the task now (empty once all are dead)."""
        pids: set[int] = set()
        for d in self.folders():
            with contextlib.suppress(FileNotFoundError):
                pids.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
        return sorted(pids)

    def has_memory_limit(self) -> bool:
        return "memory" in self.dirs

    def oom_kills(self) -> int:
        """How many of the task's processes the kernel killed for its memory limit."""
        mem = self.dirs.get("memory")
        if mem is None:
            return 0
        name = "memory.events" if mem == self._v2() else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in _read(os.path.join(mem, name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def freeze(self, frozen: bool) -> bool:
        """Freeze (or thaw) every member; True once the kernel says it is done."""
        v2 = self._v2()
        if v2 is not None:
            _write(os.path.join(v2, "cgroup.freeze"), "1" if frozen else "0")
            want = f"frozen {1 if frozen else 0}"
            return _until(lambda: want in _read(os.path.join(v2, "cgroup.events")).splitlines())
        d = self.dirs.get("freezer")
        if d is None:
            return False
        state = os.path.join(d, "freezer.state")
        _write(state, "FROZEN" if frozen else "THAWED")
        want = "FROZEN" if frozen else "THAWED"
        return _until(lambda: _read(state).strip() == want)

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to every member, none able to fork meanwhile (frozen) when possible."""
        frozen = "freezer" in self.dirs and self.freeze(True)
        try:
            for pid in self.members():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        finally:
            if frozen:
                self.freeze(False)

    def kill(self) -> None:
        """SIGKILL every member and wait until none is left. OSError if some survive."""
        v2 = self._v2()
        if v2 is not None:
            _write(os.path.join(v2, "cgroup.kill"), "1")
        else:
            self.signal_all(signal.SIGKILL)
        if not _until(lambda: not self.members(), _SETTLE):
            for pid in self.members():  # a stopped or racing process: once more, thawed
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not _until(lambda: not self.members(), _SETTLE):
                raise OSError(errno.EBUSY, f"cgroup {self.name}: processes survive SIGKILL")

    def destroy(self) -> None:
        """Kill whatever is left and remove the folders (idempotent)."""
        if any(os.path.isdir(d) for d in self.folders()):
            with contextlib.suppress(OSError):
                self.kill()
        for d in self.folders():
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove cgroup %s: %s", d, e)


def _until(done: object, timeout: float = 1.0) -> bool:
    """Poll ``done()`` (a callable) until true or ``timeout`` seconds pass."""
    assert callable(done)
    deadline = time.monotonic() + timeout
    delay = _POLL
    while True:
        with contextlib.suppress(FileNotFoundError):
            if done():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
