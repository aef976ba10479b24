"""The entries of app.json's `tasks` and `sweeps`, read into `DraftTask`s (sweeps expanded).

A task is read in two steps because a sweep's template is one task with placeholders: its
fields are type-checked once (`task_fields`), and the checks that need final values (a valid
id, a non-empty command, output paths) run on every expanded task (`check_task`), so their
errors can say which parameter values produced the bad task. Dependencies (`after`) stay
patterns here; task_graph.py resolves them once every task is known.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from bonjourgrid.app.bundle import check_relpath
from bonjourgrid.app.fields import NAME_RE, NAME_RULE, Fields, join, type_name
from bonjourgrid.app.spec import DEFAULT_RETRIES
from bonjourgrid.app.sweeps import PARAM_NAME_RE, Scalar, SweepError, combinations, describe
from bonjourgrid.app.sweeps import expand_text as _expand

TASK_KEYS = ("id", "command", "outputs", "after", "retries", "timeout", "env", "requirements")
SWEEP_KEYS = ("template", "params")
RESERVED_IDS = frozenset({"results.json"})
"""Task ids that would collide with files in the output folder."""
RESERVED_OUTPUTS = frozenset({"stdout", "stderr"})
"""Output names taken by a task's captured streams in `DIR/<task-id>/`."""


@dataclass
class DraftTask:
    """A task before `after` is resolved; `where` is its field path, `note` its sweep values."""

    where: str
    note: str
    id: str
    command: tuple[str, ...] | str
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    retries: int = DEFAULT_RETRIES
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    requirements: dict[str, Any] = field(default_factory=dict)


def task_fields(f: Fields, value: object, where: str) -> DraftTask:
    """Type-check a task (or sweep template) object; placeholders are not expanded yet."""
    d = f.obj(value, where, TASK_KEYS)
    tid = f.string(f.require(d, "id", where), join(where, "id"))
    raw_cmd = f.require(d, "command", where)
    cmd_path = join(where, "command")
    command: tuple[str, ...] | str
    if isinstance(raw_cmd, str):
        command = raw_cmd
    elif isinstance(raw_cmd, list):
        command = f.strings(raw_cmd, cmd_path)
    else:
        raise f.fail(
            cmd_path, f"expected an array of strings or a string, got {type_name(raw_cmd)}"
        )
    t = DraftTask(where=where, note="", id=tid, command=command)
    t.outputs = f.strings(d.get("outputs", []), join(where, "outputs"))
    t.after = f.strings(d.get("after", []), join(where, "after"))
    t.retries = f.integer(d.get("retries", DEFAULT_RETRIES), join(where, "retries"), 0)
    if d.get("timeout") is not None:
        t.timeout = f.timeout(d["timeout"], join(where, "timeout"))
    env_path = join(where, "env")
    env = f.obj(d.get("env", {}), env_path, None)
    t.env = {k: f.string(v, f"{env_path}.{k}") for k, v in env.items()}
    if "requirements" in d:
        t.requirements = f.requirements(d["requirements"], join(where, "requirements"))
    return t


def read_task(f: Fields, value: object, where: str) -> DraftTask:
    """One entry of `tasks`."""
    return check_task(f, task_fields(f, value, where))


def check_task(f: Fields, t: DraftTask) -> DraftTask:
    """Checks that need the final (expanded) values."""
    note = f" ({t.note})" if t.note else ""
    id_path = join(t.where, "id")
    if not NAME_RE.match(t.id):
        raise f.fail(id_path, f"{t.id!r} is not a valid task id ({NAME_RULE} characters){note}")
    if t.id in RESERVED_IDS:
        raise f.fail(id_path, f"{t.id!r} is reserved (it names the results file){note}")
    cmd_path = join(t.where, "command")
    if isinstance(t.command, str):
        if not t.command.strip():
            raise f.fail(cmd_path, f"empty command{note}")
    elif not t.command:
        raise f.fail(cmd_path, f"empty command{note}")
    elif not t.command[0]:
        raise f.fail(f"{cmd_path}[0]", f"empty program name{note}")
    seen: list[str] = []
    for i, raw in enumerate(t.outputs):
        path = f"{join(t.where, 'outputs')}[{i}]"
        why = check_relpath(raw)
        if why is not None:
            raise f.fail(path, f"{raw!r}: {why}{note}")
        rel = posixpath.normpath(raw)
        if rel.split("/")[0] in RESERVED_OUTPUTS:
            raise f.fail(path, f"{raw!r} is reserved for the task's captured output{note}")
        if rel in seen:
            raise f.fail(path, f"{raw!r} is listed twice{note}")
        seen.append(rel)
    t.outputs = tuple(seen)
    for key, val in t.env.items():
        if not key or "=" in key or "\x00" in key:
            raise f.fail(f"{join(t.where, 'env')}.{key}", f"invalid variable name{note}")
        if "\x00" in val:
            raise f.fail(f"{join(t.where, 'env')}.{key}", f"value contains NUL{note}")
    return t


def read_sweep(f: Fields, value: object, where: str) -> list[DraftTask]:
    """One entry of `sweeps`: its template expanded for every combination of its params."""
    d = f.obj(value, where, SWEEP_KEYS)
    template = task_fields(f, f.require(d, "template", where), join(where, "template"))
    params_path = join(where, "params")
    params_obj = f.obj(f.require(d, "params", where), params_path, None)
    if not params_obj:
        raise f.fail(params_path, "no parameters (a sweep needs at least one)")
    params = _params(f, params_obj, params_path)
    return [_expand_task(f, template, combo) for combo in combinations(params)]


def _params(f: Fields, d: dict[str, object], path: str) -> dict[str, list[Scalar]]:
    out: dict[str, list[Scalar]] = {}
    for pname, raw in d.items():
        ppath = f"{path}.{pname}"
        if not PARAM_NAME_RE.match(pname):
            raise f.fail(ppath, f"{pname!r} is not a valid parameter name (an identifier)")
        values: list[Scalar] = []
        for j, v in enumerate(f.array(raw, ppath)):
            if not isinstance(v, (str, int, float)):  # bool is an int
                raise f.fail(
                    f"{ppath}[{j}]",
                    f"expected a string, number or boolean, got {type_name(v)}",
                )
            values.append(v)
        if not values:
            raise f.fail(ppath, "empty list of values")
        out[pname] = values
    return out


def _expand_task(f: Fields, tpl: DraftTask, combo: dict[str, Scalar]) -> DraftTask:
    w = tpl.where

    def sub(text: str, path: str, *, quote: bool = False) -> str:
        try:
            return _expand(text, combo, quote=quote)
        except SweepError as exc:
            raise f.fail(path, str(exc)) from None

    command: tuple[str, ...] | str
    if isinstance(tpl.command, str):
        command = sub(tpl.command, join(w, "command"), quote=True)
    else:
        cmd_path = join(w, "command")
        command = tuple(sub(a, f"{cmd_path}[{i}]") for i, a in enumerate(tpl.command))
    t = DraftTask(
        where=w,
        note=describe(combo),
        id=sub(tpl.id, join(w, "id")),
        command=command,
        outputs=tuple(sub(o, f"{join(w, 'outputs')}[{i}]") for i, o in enumerate(tpl.outputs)),
        after=tuple(sub(a, f"{join(w, 'after')}[{i}]") for i, a in enumerate(tpl.after)),
        retries=tpl.retries,
        timeout=tpl.timeout,
        env={k: sub(v, f"{join(w, 'env')}.{k}") for k, v in tpl.env.items()},
        requirements=tpl.requirements,
    )
    return check_task(f, t)
