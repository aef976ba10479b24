"""Field-name rules that every control and local message obeys. Pure.

A message field is checked by its name (``app`` is an app id wherever it appears, ``task`` a
task id, ``term`` a count, ...); fields not named here are free text or opaque data that no
receiver uses as an identifier or a path. :func:`check_message` returns the first problem as
``"field: why"``, or None. docs/protocol.md lists the rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bonjourgrid import ids
from bonjourgrid.control.codec import MessageError

MAX_LABEL = 255
"""Longest free label (a running attempt's name, a state)."""


def _app(v: object) -> None:
    if isinstance(v, str):
        ids.check_app_id(v)


def _task(v: object) -> None:
    if isinstance(v, str):
        ids.check_task_id(v)


def _node(v: object) -> None:
    if isinstance(v, str):
        ids.check_node_id(v)


def _nodes(v: object) -> None:
    for x in _items(v):
        if isinstance(x, str):
            ids.check_node_id(x)


def _apps(v: object) -> None:
    for x in _items(v):
        if isinstance(x, str):
            ids.check_app_id(x)


def _items(v: object) -> tuple[object, ...]:
    """The items of a tuple or list (other types are the codec's to refuse)."""
    return tuple(v) if isinstance(v, (tuple, list)) else ()


def _hosts(v: object) -> None:
    if not isinstance(v, dict):
        return
    for k, x in v.items():
        ids.check_node_id(k)
        if isinstance(x, str):
            ids.check_host(x)


def _host(v: object) -> None:
    if isinstance(v, str):
        ids.check_host(v)


def _user(v: object) -> None:
    if isinstance(v, str):
        ids.check_user(v, empty_ok=True)


def _name(v: object) -> None:
    if isinstance(v, str) and v != "":
        ids.check_name(v, "app name")


def _outputs(v: object) -> None:
    if isinstance(v, (tuple, list)):  # RunTask.outputs (declared paths); bytes elsewhere
        for x in v:
            if isinstance(x, str):
                ids.check_relpath(x, "output")


def _env(v: object) -> None:
    if not isinstance(v, dict):
        return
    for k, x in v.items():
        ids.check_env_name(k)
        if isinstance(x, str) and "\x00" in x:
            raise ids.IdError(f"value of {k!r} contains NUL")


def _count(v: object) -> None:
    if isinstance(v, int) and not isinstance(v, bool):
        ids.check_count(v, "value")


def _duration(v: object) -> None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        ids.check_duration(float(v), "value")


def _timeout(v: object) -> None:
    if v is not None:
        _duration(v)


def _labels(v: object) -> None:
    for x in _items(v):
        if isinstance(x, str) and (len(x) > MAX_LABEL or any(ord(c) < 32 for c in x)):
            raise ids.IdError(f"{x!r} is not a valid label")


RULES: dict[str, Callable[[object], None]] = {
    "app": _app,
    "task": _task,
    "node": _node,
    "candidate": _node,
    "coordinator": _node,
    "replicas": _nodes,
    "old": _nodes,
    "coordinates": _apps,
    "hosts": _hosts,
    "host": _host,
    "coordinator_host": _host,
    "collector_host": _host,
    "user": _user,
    "signer": _user,
    "name": _name,
    "outputs": _outputs,
    "env": _env,
    "attempt": _count,
    "term": _count,
    "last_term": _count,
    "seq": _count,
    "members": _count,
    "version": _count,
    "cpus": _count,
    "slots": _count,
    "free_slots": _count,
    "memory_mb": _count,
    "lease": _duration,
    "seconds": _duration,
    "timeout": _timeout,
    "running": _labels,
}


def check_message(msg: object) -> str | None:
    """The first invalid field of ``msg`` (a dataclass) as ``"field: why"``, or None."""
    for f in dataclasses.fields(msg):  # type: ignore[arg-type]
        rule = RULES.get(f.name)
        if rule is None:
            continue
        try:
            rule(getattr(msg, f.name))
        except ids.IdError as e:
            return f"{f.name}: {e}"
    return None


class Checked:
    """Base of every message: its ids, names, paths and numbers are checked when it is made
    (so on decode, and at the sender, as MessageError), by the rules above."""

    def __post_init__(self) -> None:
        problem = check_message(self)
        if problem is not None:
            raise MessageError(f"{type(self).__name__}.{problem}")
