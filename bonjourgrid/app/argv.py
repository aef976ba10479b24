"""The argv a task runs with, from its spec: what every backend launches and what the
volunteer checks a RunTask against (app/task_check.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec


def task_argv(task: TaskSpec) -> tuple[str, ...]:
    """An argv list runs as is; a string command runs under ``/bin/sh -c``."""
    if isinstance(task.command, str):
        return ("/bin/sh", "-c", task.command)
    return tuple(task.command)


__all__ = ["task_argv"]
