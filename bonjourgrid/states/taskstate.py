"""The one task-state enum shared by the coordinator, the journal, backends and results.json."""

from __future__ import annotations

from enum import Enum


class TaskState(str, Enum):
    """Where a task is in its life. The values are what results.json and the journal store."""

    PENDING = "pending"
    """Waiting for its predecessors (`after`) to be done."""
    READY = "ready"
    """Every predecessor is done; waiting for a worker slot."""
    RUNNING = "running"
    """An attempt is running on a worker."""
    DONE = "done"
    """An attempt exited 0 and its result is recorded. Terminal."""
    FAILED = "failed"
    """Out of retries, lost too often, a predecessor failed, or the app was cancelled. Terminal."""

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED})
"""States a task never leaves."""
