"""Kernel-side isolation of one task: what the child does between fork and exec.

``ChildSetup`` is the ``preexec_fn`` of a task's process. In order, as the daemon's user:
it joins the attempt's cgroups (``cgroups.py``); lowest CPU priority; when asked, a private
network namespace (only a loopback, brought up)
and a private mount namespace (a fresh tmpfs on ``/tmp`` and ``/dev/shm``, the task's
directory bound at ``TASK_MOUNT``); rlimits; then, when the daemon is root, it drops every
group and becomes the slot's uid/gid. The namespaces need root (CAP_SYS_ADMIN): ``probe()``
tells once per process whether this kernel allows them, so a task never fails half way.

Python 3.11 has no ``os.unshare``/``mount``: they are called through libc with ctypes.
Everything here is Linux-only; elsewhere ``probe()`` says nothing is available.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import os
import resource
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass

TASK_MOUNT = "/tmp/task"
"""Where a task sees its own directory inside a private mount namespace."""

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    rc = _libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(rc, f"mount {target}")


def loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (local sockets keep working)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sh", b"lo", _IFF_UP))


def private_mounts(tmp_size_mb: int) -> None:
    """Private mount namespace: fresh /tmp and /dev/shm; the cwd (task dir) at TASK_MOUNT.

    Must run with the task's directory as the current directory (subprocess's ``cwd``).
    """
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        mount("none", "/", None, _MS_REC | _MS_PRIVATE, None)
        opts = f"mode=1777,size={max(1, tmp_size_mb)}m"
        mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, opts)
        if os.path.isdir("/dev/shm"):
            mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, opts)
        os.mkdir(TASK_MOUNT, 0o700)
        mount(f"/proc/self/fd/{here}", TASK_MOUNT, None, _MS_BIND, None)
    finally:
        os.close(here)
    os.chdir(TASK_MOUNT)


@dataclass(frozen=True)
class ChildSetup:
    """The task process's ``preexec_fn`` (see the module docstring for the order)."""

    rlimits: tuple[tuple[int, int, int], ...] = ()
    """(resource, soft, hard) triples."""
    uid: int | None = None
    gid: int | None = None
    new_network: bool = False
    new_mounts: bool = False
    tmp_size_mb: int = 256
    nice: int = 19
    cgroup_procs: tuple[str, ...] = ()
    """``cgroup.procs`` files the child joins first, so all its descendants are members."""

    def __call__(self) -> None:
        for procs in self.cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
        os.nice(self.nice)
        flags = (_CLONE_NEWNET if self.new_network else 0) | (
            _CLONE_NEWNS if self.new_mounts else 0
        )
        if flags:
            unshare(flags)
        if self.new_network:
            loopback_up()
        if self.new_mounts:
            private_mounts(self.tmp_size_mb)
        for res, soft, hard in self.rlimits:
            resource.setrlimit(res, (soft, hard))
        if self.uid is not None:
            gid = self.gid if self.gid is not None else self.uid
            os.setgroups([])
            os.setgid(gid)
            os.setuid(self.uid)


@dataclass(frozen=True)
class Capabilities:
    network_namespace: bool
    mount_namespace: bool


@functools.cache
def probe() -> Capabilities:
    """Which namespaces this process may create for its tasks (tried once, in a child)."""
    if not sys.platform.startswith("linux"):
        return Capabilities(False, False)
    return Capabilities(_try(ChildSetup(new_network=True, nice=0)), _try_mounts())


def _try(setup: ChildSetup, cwd: str | None = None) -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["/bin/true"], preexec_fn=setup, cwd=cwd, timeout=10, check=False)
        return done.returncode == 0
    return False


def _try_mounts() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bjgrid-probe-") as d:
        return _try(ChildSetup(new_mounts=True, tmp_size_mb=1, nice=0), cwd=d)


def kill_all_of(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a slot account), escaped daemons included."""
    signal_all_of(uid, 9)


def signal_all_of(uid: int, sig: int) -> None:
    """Send ``sig`` to every process of ``uid`` (a slot account).

    A helper becomes ``uid`` and calls kill(-1): the kernel then signals exactly the
    processes that uid may signal, i.e. its own, except the helper itself.

    Fast path: util-linux ``setpriv`` drops to ``uid`` and execs procps ``kill -SIG -- -1``
    (both from /usr/bin or /bin, found once), spawned without a ``preexec_fn`` so Python uses
    vfork: ~2 ms of CPU instead of ~3 ms for forking the whole daemon (docs/performance.md).
    Any failure of that helper falls back to forking a child that becomes ``uid`` itself.
    """
    helper = _signal_helper()
    if helper is not None:
        setpriv, kill = helper
        argv = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        argv += [kill, f"-{int(sig)}", "--", "-1"]
        with contextlib.suppress(OSError):
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},
                check=False,
            )
            if done.returncode == 0:
                return
    setup = functools.partial(_become_and_signal, uid, sig)
    subprocess.run(["/bin/true"], preexec_fn=setup, check=False)


@functools.cache
def _signal_helper() -> tuple[str, str] | None:
    """Absolute paths of ``setpriv`` and a ``kill`` that takes ``-- -1``, or None."""

    def find(name: str) -> str | None:
        for folder in ("/usr/bin", "/bin"):
            path = os.path.join(folder, name)
            if os.access(path, os.X_OK):
                return path
        return None

    setpriv, kill = find("setpriv"), find("kill")
    return (setpriv, kill) if setpriv and kill else None


def _become_and_signal(uid: int, sig: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, sig)


class AccountLease:
    """A slot account (uid = gid) held by one running task, host-wide.

    Every daemon on a host (``--local`` workers, virtual-LAN hosts, a real volunteer) leases
    accounts through lock files in one folder, so no two running tasks ever share a uid, and
    killing every process of a leased uid only ever hits that task's leftovers. The kernel
    drops the lock when its holder dies: a crashed daemon leaks nothing.
    """

    def __init__(self, uid: int, fd: int, *, clean: bool = False) -> None:
        self.uid = uid
        self._fd: int | None = fd
        self.empty = clean
        """Whether ``uid`` is known to have no process: its previous holder's last sweep
        succeeded (the lock file said so), or this holder swept it and started nothing
        since. The sandbox sweeps before a task only when this is False, clears it before
        it starts a process and sets it after a sweep; ``release`` records it for the next
        holder."""

    def release(self) -> None:
        if self._fd is not None:
            if self.empty:
                with contextlib.suppress(OSError):
                    os.pwrite(self._fd, _LEASE_CLEAN, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


_LEASE_CLEAN = b"clean\n"
_LEASE_DIRTY = b"dirty\n"
"""A lock file's content: ``clean`` once its last holder left no process of the uid behind.
Written as ``dirty`` as soon as a lease is taken, so a holder that dies (kill -9, a crash)
leaves ``dirty`` and the next one sweeps the uid first. Same length: one pwrite at 0."""


def lease_account(base: int, count: int, lock_dir: str, first: int = 0) -> AccountLease:
    """Lease the first free uid of ``base .. base+count-1``, trying ``base+first`` first.

    Raises OSError when every account of the range is in use.
    """
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    for i in range(count):
        uid = base + (first + i) % count
        fd = os.open(os.path.join(lock_dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            clean = os.pread(fd, 16, 0) == _LEASE_CLEAN
            if os.pwrite(fd, _LEASE_DIRTY, 0) != len(_LEASE_DIRTY):
                raise OSError(f"cannot mark {uid}.lock as in use")
        except OSError:
            os.close(fd)
            raise
        return AccountLease(uid, fd, clean=clean)
    raise OSError(f"all {count} slot accounts from uid {base} are in use")
