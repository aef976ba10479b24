"""One daemon per host: an exclusive lock file in the state dir (released by the kernel when
the holder dies, so a kill -9 never leaves a stale lock)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DaemonRunning(Exception):
    """Another bjgrid daemon holds the lock; its pid is in the message."""


class DaemonLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> DaemonLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonRunning(f"a bjgrid daemon is already running here (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
