"""A task's rlimits, and the words a limit's kill is reported with."""

from __future__ import annotations

import os
import resource
import signal
from typing import IO

from bonjourgrid.ce_backends.embedded.sandbox_config import SandboxConfig, TaskRun

_MB = 1024 * 1024
_OOM_MARKERS = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"std::bad_alloc",
    b"out of memory",
    b"Out of memory",
)
"""What a program hitting the address-space backstop usually prints (malloc failed)."""


def memory_cap_mb(run: TaskRun, config: SandboxConfig) -> int:
    return run.memory_mb if run.memory_mb > 0 else config.memory_mb


def rlimits(cap_mb: int, config: SandboxConfig, uid: int | None) -> list[tuple[int, int, int]]:
    limits = [
        (resource.RLIMIT_CPU, config.cpu_seconds, config.cpu_seconds + 5),
        (resource.RLIMIT_FSIZE, config.file_size_mb * _MB, config.file_size_mb * _MB),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if cap_mb > 0:
        # A backstop against one huge allocation faster than the watchdog: address space
        # is not memory (threads and mappings reserve much), so it is generous.
        backstop = (2 * cap_mb + 512) * _MB
        limits.append((resource.RLIMIT_AS, backstop, backstop))
    if uid is not None:
        limits.append((resource.RLIMIT_NPROC, config.max_processes, config.max_processes))
    return limits


SHELL_LIMIT_CODES = (128 + signal.SIGXCPU, 128 + signal.SIGXFSZ)


def signal_reason(sig: int, config: SandboxConfig) -> str:
    if sig == signal.SIGXCPU:
        return f"CPU time limit exceeded ({config.cpu_seconds} s)"
    if sig == signal.SIGXFSZ:
        return f"file size limit exceeded ({config.file_size_mb} MB)"
    return f"killed by signal {sig}"


def looks_out_of_memory(stderr: IO[bytes]) -> bool:
    """A failed task whose last words say an allocation failed hit the address-space cap."""
    try:
        size = os.fstat(stderr.fileno()).st_size
        tail = os.pread(stderr.fileno(), 4096, max(0, size - 4096))
    except OSError:
        return False
    return any(m in tail for m in _OOM_MARKERS)
