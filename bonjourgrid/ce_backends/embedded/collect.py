"""Read what a finished task left: its logs and declared outputs, never following a link.

Called once every process of the task is dead. Everything is opened relative to the task
directory's descriptor (taken before the task started), one component at a time, with
``O_NOFOLLOW | O_NONBLOCK``, and must ``fstat`` as a regular file or a folder with a single
name: a symbolic link, hard link, FIFO, device or socket fails the attempt with the reason,
and no open ever blocks. ``stdout`` and ``stderr`` are the unnamed files the daemon gave the
task, read back through their descriptors. The whole is capped (``max_bytes`` of content,
``max_files`` entries): beyond, only the logs' last bytes come back with
``outputs exceed N MB``, so a result is always small enough for one frame.
Blocking file I/O: run it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import posixpath
import stat
from collections.abc import Sequence
from typing import IO

from bonjourgrid.app.bundle import FileData, check_relpath, pack_entries, sha256_hex

_MB = 1024 * 1024
LOG_TAIL = 64 * 1024
"""Bytes of each log kept when a task's outputs exceed the cap."""
_MAX_DEPTH = 64
"""Folder nesting of an output beyond which it is refused."""
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = _OPEN_FILE | os.O_DIRECTORY


class OutputRefused(Exception):
    """An output cannot be collected safely (the message names it and why)."""


class OutputsTooLarge(Exception):
    pass


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file or folder"


class _Reader:
    """Collects entries under a budget of bytes and entries."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.left = max_bytes
        self.files_left = max_files
        self.entries: dict[str, FileData | None] = {}

    def _take(self, arc: str, fd: int) -> None:
        st = os.fstat(fd)
        self.files_left -= 1
        if self.files_left < 0:
            raise OutputsTooLarge()
        if stat.S_ISDIR(st.st_mode):
            self.entries[arc] = None
            return
        if not stat.S_ISREG(st.st_mode):
            raise OutputRefused(f"{arc}: {_kind(st.st_mode)}, not a regular file")
        if st.st_nlink != 1:
            raise OutputRefused(f"{arc}: a hard link (a file with several names)")
        data = _read_at_most(fd, self.left)
        self.left -= len(data)
        self.entries[arc] = (st.st_mode, len(data), io.BytesIO(data))

    def add_log(self, name: str, fh: IO[bytes]) -> None:
        fd = fh.fileno()
        st = os.fstat(fd)
        self.files_left -= 1
        if st.st_size > self.left or self.files_left < 0:
            raise OutputsTooLarge()
        data = os.pread(fd, st.st_size, 0)
        self.left -= len(data)
        self.entries[name] = (0o644, len(data), io.BytesIO(data))

    def add_output(self, top: int, rel: str) -> None:
        why = check_relpath(rel)
        if why is not None:
            raise OutputRefused(f"{rel}: {why}")
        arc = posixpath.normpath(rel)
        parts = arc.split("/")
        fd = os.dup(top)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                try:
                    child = os.open(part, _OPEN_FILE if last else _OPEN_DIR, dir_fd=fd)
                except OSError as e:
                    raise self._refusal(e, fd, part, "/".join(parts[: i + 1]), rel) from None
                os.close(fd)
                fd = child
            self._walk(arc, fd, 0)
        finally:
            os.close(fd)

    def _walk(self, arc: str, fd: int, depth: int) -> None:
        self._take(arc, fd)
        if self.entries[arc] is not None:
            return
        if depth >= _MAX_DEPTH:
            raise OutputRefused(f"{arc}: folders nested deeper than {_MAX_DEPTH}")
        for name in sorted(os.listdir(fd)):
            sub = f"{arc}/{name}"
            try:
                child = os.open(name, _OPEN_FILE, dir_fd=fd)
            except OSError as e:
                raise self._refusal(e, fd, name, sub, sub) from None
            try:
                self._walk(sub, child, depth + 1)
            finally:
                os.close(child)

    @staticmethod
    def _refusal(e: OSError, dir_fd: int, name: str, arc: str, rel: str) -> Exception:
        if e.errno == errno.ENOENT:
            return FileNotFoundError(rel)
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            with contextlib.suppress(OSError):
                target = os.readlink(name, dir_fd=dir_fd)
                inside = posixpath.normpath(posixpath.join(posixpath.dirname(arc), target))
                if target.startswith("/") or inside.split("/")[0] == "..":
                    return OutputRefused(
                        f"{arc}: symbolic link resolves outside the task's sandbox"
                    )
                return OutputRefused(f"{arc}: a symbolic link (links are not collected)")
            if e.errno == errno.ENOTDIR:
                return OutputRefused(f"{arc}: not a folder")
        return OutputRefused(f"{arc}: cannot be read ({e.strerror})")


def _read_at_most(fd: int, budget: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while True:
        chunk = os.read(fd, min(1 << 20, budget - got + 1))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        got += len(chunk)
        if got > budget:
            raise OutputsTooLarge()


def collect(
    task_fd: int,
    logs: tuple[IO[bytes], IO[bytes]],
    outputs: Sequence[str] | None,
    error: str,
    *,
    max_bytes: int,
    max_files: int,
) -> tuple[bytes, str, str]:
    """(tar.gz of stdout, stderr and - when ``outputs`` is not None - the declared outputs,
    its sha256, the attempt's error). A refusal or an exceeded cap becomes the error (and
    the outputs are left out); the error is appended to ``stderr``."""
    reader = _Reader(max_bytes, max_files)
    try:
        for rel in outputs or ():
            try:
                reader.add_output(task_fd, rel)
            except FileNotFoundError:
                error = error or f"declared output {rel!r} was not produced"
    except OutputRefused as e:
        error, reader = f"output refused: {e}", _Reader(max_bytes, max_files)
    except OutputsTooLarge:
        error, reader = _too_large(max_bytes, max_files), _Reader(max_bytes, max_files)
    except OSError as e:
        error, reader = f"output refused: {e}", _Reader(max_bytes, max_files)
    stdout, stderr = logs
    if error:
        note = f"\n[bjgrid] {error}\n".encode()
        os.pwrite(stderr.fileno(), note, os.fstat(stderr.fileno()).st_size)
    try:
        reader.add_log("stdout", stdout)
        reader.add_log("stderr", stderr)
    except OutputsTooLarge:
        error = error or _too_large(max_bytes, max_files)
        reader = _Reader(max_bytes, max_files)
        for name, fh in (("stdout", stdout), ("stderr", stderr)):
            tail = _tail(fh)
            if name == "stderr":
                tail += f"\n[bjgrid] {error}\n".encode()
            reader.entries[name] = (0o644, len(tail), io.BytesIO(tail))
    blob = pack_entries(reader.entries)
    return blob, sha256_hex(blob), error


def _too_large(max_bytes: int, max_files: int) -> str:
    return f"outputs exceed {max_bytes // _MB} MB or {max_files} files (the volunteer's cap)"


def _tail(fh: IO[bytes]) -> bytes:
    size = os.fstat(fh.fileno()).st_size
    start = max(0, size - LOG_TAIL)
    data = os.pread(fh.fileno(), size - start, start)
    return (b"[bjgrid] ... (truncated)\n" if start else b"") + data
