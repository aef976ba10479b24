"""Is this RunTask what the app's (signed) spec says? The volunteer's check before it runs one.

A coordinator builds every ``RunTask`` from the app's ``TaskSpec`` (the embedded backend's
``launch``: argv from ``task_argv``, the task's environment, outputs, timeout and
requirements). A volunteer serving a signed app holds the spec the user signed; anything a
coordinator sends that the spec does not say — another command, an extra environment
variable, other outputs, the network for a task without it, a larger memory cap — is a
coordinator running code the user never signed, and is refused. Inputs may only be declared
outputs of the task's predecessors (``ResultStore.inputs_for`` packs exactly those): a tar
that carries anything else would overwrite the app's own files before the task starts.

Pure, except :func:`input_names`, which reads (and bounds) a tar in memory.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Iterable

from bonjourgrid.app.argv import task_argv
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import RunTask


def runtask_matches(spec: AppSpec, msg: RunTask) -> str | None:
    """Why ``msg`` is not a task of ``spec`` exactly as the spec says (None: it is)."""
    task = next((t for t in spec.tasks if t.id == msg.task), None)
    if task is None:
        return f"task {msg.task!r} is not in the app's spec"
    req = task.requirements
    wanted: tuple[tuple[str, object, object], ...] = (
        ("argv", task_argv(task), tuple(msg.argv)),
        ("env", task.env_dict(), dict(msg.env)),
        ("outputs", tuple(task.outputs), tuple(msg.outputs)),
        ("timeout", task.timeout, msg.timeout),
        ("cpus", req.cpus, msg.cpus),
        ("memory_mb", req.memory_mb, msg.memory_mb),
        ("network", req.network, msg.network),
    )
    for name, expected, got in wanted:
        if expected != got:
            return (
                f"task {msg.task!r}: {name} {_short(got)} is not the app's {_short(expected)} "
                "(the spec the app was accepted with)"
            )
    return None


def inputs_problem(spec: AppSpec, task_id: str, names: Iterable[str]) -> str | None:
    """Why a task's inputs holding ``names`` (tar member names) are not only declared outputs
    of its predecessors (None: they are). Folders leading to a declared output are allowed."""
    task = next((t for t in spec.tasks if t.id == task_id), None)
    if task is None:
        return f"task {task_id!r} is not in the app's spec"
    allowed: set[str] = set()
    folders: set[str] = set()
    for pred in task.after:
        pred_task = next((t for t in spec.tasks if t.id == pred), None)
        for rel in pred_task.outputs if pred_task is not None else ():
            rel = posixpath.normpath(rel)
            allowed.add(rel)
            parent = posixpath.dirname(rel)
            while parent:
                folders.add(parent)
                parent = posixpath.dirname(parent)
    for raw in names:
        name = posixpath.normpath(raw)
        if name not in allowed and name not in folders:
            return (
                f"task {task_id!r}: input {raw!r} is not a declared output of its "
                f"predecessors ({', '.join(task.after) or 'none'})"
            )
    return None


class InputsError(ValueError):
    """The inputs are not a readable tar.gz, or are larger than allowed."""


def input_names(blob: bytes, *, max_bytes: int, max_members: int) -> list[str]:
    """The member names of a task's inputs (a tar.gz), reading no further than ``max_bytes``
    of content and ``max_members`` entries (InputsError beyond, or for a bad archive)."""
    if not blob:
        return []
    names: list[str] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r|gz") as tar:
            for member in tar:  # streaming: a member's data is skipped, never kept
                if len(names) >= max_members:
                    raise InputsError(f"inputs have more than {max_members} entries")
                total += max(0, member.size)
                if total > max_bytes:
                    raise InputsError(f"inputs expand beyond {max_bytes} bytes")
                names.append(member.name)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise InputsError(f"inputs are not a valid tar.gz ({e})") from None
    return names


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = [
    "InputsError",
    "input_names",
    "inputs_problem",
    "runtask_matches",
]
