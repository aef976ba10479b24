"""Read and validate app.json (format version 1) into an `AppSpec`.

Validation stops at the first problem and reports it as `AppError`, whose text names the
file, the field path (`tasks[2].after[0]`, `sweeps[0].template.id`) and the problem:

    squares/app.json: tasks[2].after[0]: 'sq-*x' matches no task

The format is documented in docs/app-format.md and described by app.schema.json.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

from bonjourgrid.app.bundle import BundleError, check_relpath, check_tree
from bonjourgrid.app.spec import (
    ATTRIBUTE_NAME_PATTERN,
    BACKENDS,
    DEFAULT_RETRIES,
    FORMAT_VERSION,
    MAX_WEIGHT,
    AppSpec,
    Requirements,
    TaskSpec,
    env_pairs,
)
from bonjourgrid.app.sweeps import PARAM_NAME_RE, Scalar, SweepError, combinations, describe
from bonjourgrid.app.sweeps import expand_text as _expand

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""App names and task ids: safe as a file name, a DNS-SD TXT value and a folder name."""
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64"
RESERVED_IDS = frozenset({"results.json"})
"""Task ids that would collide with files in the output folder."""
RESERVED_OUTPUTS = frozenset({"stdout", "stderr"})
"""Output names taken by a task's captured streams in `DIR/<task-id>/`."""

APP_KEYS = (
    "$schema",
    "version",
    "name",
    "files",
    "tasks",
    "sweeps",
    "workers",
    "replicas",
    "backend",
    "requirements",
    "weight",
    "wait_timeout",
)
TASK_KEYS = ("id", "command", "outputs", "after", "retries", "timeout", "env", "requirements")
SWEEP_KEYS = ("template", "params")
REQUIREMENT_KEYS = ("cpus", "memory_mb", "os", "arch", "network", "attributes")
_GLOB_CHARS = frozenset("*?[")
ATTRIBUTE_NAME = re.compile(ATTRIBUTE_NAME_PATTERN)


class AppError(Exception):
    """An app.json that cannot be run: `source` (file), `field` (path, may be '') and `problem`."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        super().__init__(source, field, problem)
        self.source = source
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        if self.field:
            return f"{self.source}: {self.field}: {self.problem}"
        return f"{self.source}: {self.problem}"


def schema_text() -> str:
    """The JSON Schema (draft 2020-12) of app.json."""
    return resources.files("bonjourgrid.app").joinpath("app.schema.json").read_text("utf-8")


def load_app(path: str | Path) -> tuple[AppSpec, Path]:
    """Read and validate an app.json (or a folder holding one); returns (spec, app folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "app.json"
    source = str(p)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise AppError(source, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AppError(source, "", "not UTF-8 text") from None
    data = parse_json_text(text, source=source)
    app_dir = p.parent.resolve()
    return parse_app(data, app_dir=app_dir, source=source), app_dir


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_text(text: str, *, source: str) -> object:
    """Strict JSON: no duplicate keys, no NaN/Infinity; errors carry line and column."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise AppError(source, "", f"invalid JSON at {where}: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise AppError(source, "", f"invalid JSON: duplicate key {exc.args[0]!r}") from None
    except ValueError as exc:
        raise AppError(source, "", f"invalid JSON: {exc}") from None


def parse_app(data: object, *, app_dir: Path | None, source: str) -> AppSpec:
    """Validate decoded app.json `data`. With `app_dir` None, `files` are checked for shape
    only (used by `AppSpec.from_json`, where the app folder is not at hand)."""
    return _Parser(source, app_dir).app(data)


@dataclass
class _Task:
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


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Parser:
    def __init__(self, source: str, app_dir: Path | None) -> None:
        self.source = source
        self.app_dir = app_dir

    def fail(self, path: str, problem: str) -> AppError:
        return AppError(self.source, path, problem)

    # --- typed accessors -------------------------------------------------------------------

    def obj(self, value: object, path: str, keys: tuple[str, ...] | None) -> dict[str, object]:
        """`value` as an object whose keys are all in `keys` (None: any key)."""
        if not isinstance(value, dict):
            what = "a JSON object at the top level" if not path else "an object"
            raise self.fail(path, f"expected {what}, got {_type_name(value)}")
        for key in value:
            if keys is not None and key not in keys:
                raise self.fail(
                    _join(path, key), f"unknown key (expected one of: {', '.join(keys)})"
                )
        return value

    def require(self, d: dict[str, object], key: str, path: str) -> object:
        if key not in d:
            raise self.fail(path, f"missing required key {key!r}")
        return d[key]

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_type_name(value)}")
        return value

    def integer(self, value: object, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_type_name(value)}")
        if value < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {value}")
        return value

    def array(self, value: object, path: str) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected an array, got {_type_name(value)}")
        return value

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(self.array(value, path)))

    def name(self, value: object, path: str, what: str) -> str:
        text = self.string(value, path)
        if not NAME_RE.match(text):
            raise self.fail(path, f"{text!r} is not a valid {what} ({NAME_RULE} characters)")
        return text

    # --- the app ---------------------------------------------------------------------------

    def app(self, data: object) -> AppSpec:
        top = self.obj(data, "", APP_KEYS)
        if "$schema" in top:
            self.string(top["$schema"], "$schema")
        version = FORMAT_VERSION
        if "version" in top:
            version = self.integer(top["version"], "version", -(2**63))
            if version != FORMAT_VERSION:
                raise self.fail(
                    "version", f"unsupported version {version} (this bjgrid reads version 1)"
                )
        name = self.name(self.require(top, "name", ""), "name", "app name")
        files = self.files(top.get("files", []))
        workers: int | None = None
        if top.get("workers") is not None:
            workers = self.integer(top["workers"], "workers", 1)
        replicas = self.integer(top.get("replicas", 0), "replicas", 0)
        backend = self.string(top.get("backend", BACKENDS[0]), "backend")
        if backend not in BACKENDS:
            raise self.fail(
                "backend", f"unknown backend {backend!r} (expected one of: {', '.join(BACKENDS)})"
            )
        weight = self.integer(top.get("weight", 1), "weight", 1)
        if weight > MAX_WEIGHT:
            raise self.fail("weight", f"{weight} is above {MAX_WEIGHT}")
        wait_timeout = None
        if top.get("wait_timeout") is not None:
            wait_timeout = self.timeout(top["wait_timeout"], "wait_timeout")
        defaults = Requirements(**self.requirements(top.get("requirements", {}), "requirements"))
        tasks = [
            self.task(t, f"tasks[{i}]")
            for i, t in enumerate(self.array(top.get("tasks", []), "tasks"))
        ]
        for i, s in enumerate(self.array(top.get("sweeps", []), "sweeps")):
            tasks.extend(self.sweep(s, f"sweeps[{i}]"))
        if not tasks:
            raise self.fail("tasks", "no tasks (declare at least one in 'tasks' or 'sweeps')")
        return AppSpec(
            name=name,
            tasks=tuple(self.resolve(tasks, defaults)),
            files=files,
            workers=workers,
            replicas=replicas,
            backend=backend,
            requirements=defaults,
            version=version,
            weight=weight,
            wait_timeout=wait_timeout,
        )

    def files(self, value: object) -> tuple[str, ...]:
        out: list[str] = []
        for i, raw in enumerate(self.strings(value, "files")):
            path = f"files[{i}]"
            why = check_relpath(raw)
            if why is not None:
                raise self.fail(path, f"{raw!r}: {why} (files must stay inside the app folder)")
            rel = posixpath.normpath(raw)
            if rel in out:
                raise self.fail(path, f"{raw!r} is listed twice")
            out.append(rel)
            if self.app_dir is not None:
                self.check_file(raw, rel, path, self.app_dir)
        return tuple(out)

    def check_file(self, raw: str, rel: str, path: str, app_dir: Path) -> None:
        full = app_dir / rel
        if not os.path.lexists(full):
            raise self.fail(path, f"{raw!r} does not exist in the app folder")
        real, real_root = os.path.realpath(full), os.path.realpath(app_dir)
        if not real.startswith(real_root.rstrip("/") + "/"):
            raise self.fail(path, f"{raw!r} resolves outside the app folder")
        if raw.endswith("/") and not os.path.isdir(full):
            raise self.fail(path, f"{raw!r} is not a folder")
        try:
            check_tree(app_dir, [rel], label="the app folder")
        except BundleError as exc:
            raise self.fail(path, f"{exc.path!r}: {exc.problem}") from None

    def requirements(self, value: object, path: str) -> dict[str, Any]:
        """The requirement fields present in `value` (task-level ones override per field)."""
        d = self.obj(value, path, REQUIREMENT_KEYS)
        out: dict[str, Any] = {}
        if "cpus" in d:
            out["cpus"] = self.integer(d["cpus"], _join(path, "cpus"), 1)
        if "memory_mb" in d:
            out["memory_mb"] = self.integer(d["memory_mb"], _join(path, "memory_mb"), 0)
        for key in ("os", "arch"):
            if key in d:
                out[key] = None if d[key] is None else self.string(d[key], _join(path, key))
        if "network" in d:
            if not isinstance(d["network"], bool):
                raise self.fail(_join(path, "network"), "expected true or false")
            out["network"] = d["network"]
        if "attributes" in d:
            out["attributes"] = self.attributes(d["attributes"], _join(path, "attributes"))
        return out

    def attributes(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        """Custom attributes a volunteer must declare: names as in its TXT record, string values."""
        d = self.obj(value, path, None)
        for k, v in d.items():
            if not ATTRIBUTE_NAME.fullmatch(k):
                raise self.fail(
                    _join(path, k), "attribute names are a-z, 0-9 and '_' (at most 16 characters)"
                )
            self.string(v, _join(path, k))
        return tuple(sorted((k, str(v)) for k, v in d.items()))

    # --- tasks and sweeps ------------------------------------------------------------------

    def task_fields(self, value: object, where: str) -> _Task:
        """Type-check a task (or sweep template) object; placeholders are not expanded yet."""
        d = self.obj(value, where, TASK_KEYS)
        tid = self.string(self.require(d, "id", where), _join(where, "id"))
        raw_cmd = self.require(d, "command", where)
        cmd_path = _join(where, "command")
        command: tuple[str, ...] | str
        if isinstance(raw_cmd, str):
            command = raw_cmd
        elif isinstance(raw_cmd, list):
            command = self.strings(raw_cmd, cmd_path)
        else:
            raise self.fail(
                cmd_path, f"expected an array of strings or a string, got {_type_name(raw_cmd)}"
            )
        t = _Task(where=where, note="", id=tid, command=command)
        t.outputs = self.strings(d.get("outputs", []), _join(where, "outputs"))
        t.after = self.strings(d.get("after", []), _join(where, "after"))
        t.retries = self.integer(d.get("retries", DEFAULT_RETRIES), _join(where, "retries"), 0)
        if d.get("timeout") is not None:
            t.timeout = self.timeout(d["timeout"], _join(where, "timeout"))
        env_path = _join(where, "env")
        env = self.obj(d.get("env", {}), env_path, None)
        t.env = {k: self.string(v, f"{env_path}.{k}") for k, v in env.items()}
        if "requirements" in d:
            t.requirements = self.requirements(d["requirements"], _join(where, "requirements"))
        return t

    def timeout(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number of seconds, got {_type_name(value)}")
        if not math.isfinite(value) or value <= 0:
            raise self.fail(path, f"must be a positive number of seconds, got {value}")
        return float(value)

    def task(self, value: object, where: str) -> _Task:
        return self.check_task(self.task_fields(value, where))

    def check_task(self, t: _Task) -> _Task:
        """Checks that need the final (expanded) values."""
        note = f" ({t.note})" if t.note else ""
        id_path = _join(t.where, "id")
        if not NAME_RE.match(t.id):
            raise self.fail(
                id_path, f"{t.id!r} is not a valid task id ({NAME_RULE} characters){note}"
            )
        if t.id in RESERVED_IDS:
            raise self.fail(id_path, f"{t.id!r} is reserved (it names the results file){note}")
        cmd_path = _join(t.where, "command")
        if isinstance(t.command, str):
            if not t.command.strip():
                raise self.fail(cmd_path, f"empty command{note}")
        elif not t.command:
            raise self.fail(cmd_path, f"empty command{note}")
        elif not t.command[0]:
            raise self.fail(f"{cmd_path}[0]", f"empty program name{note}")
        seen: list[str] = []
        for i, raw in enumerate(t.outputs):
            path = f"{_join(t.where, 'outputs')}[{i}]"
            why = check_relpath(raw)
            if why is not None:
                raise self.fail(path, f"{raw!r}: {why}{note}")
            rel = posixpath.normpath(raw)
            if rel.split("/")[0] in RESERVED_OUTPUTS:
                raise self.fail(path, f"{raw!r} is reserved for the task's captured output{note}")
            if rel in seen:
                raise self.fail(path, f"{raw!r} is listed twice{note}")
            seen.append(rel)
        t.outputs = tuple(seen)
        for key, val in t.env.items():
            if not key or "=" in key or "\x00" in key:
                raise self.fail(f"{_join(t.where, 'env')}.{key}", f"invalid variable name{note}")
            if "\x00" in val:
                raise self.fail(f"{_join(t.where, 'env')}.{key}", f"value contains NUL{note}")
        return t

    def sweep(self, value: object, where: str) -> list[_Task]:
        d = self.obj(value, where, SWEEP_KEYS)
        template = self.task_fields(self.require(d, "template", where), _join(where, "template"))
        params_path = _join(where, "params")
        params_obj = self.obj(self.require(d, "params", where), params_path, None)
        if not params_obj:
            raise self.fail(params_path, "no parameters (a sweep needs at least one)")
        params = self.params(params_obj, params_path)
        return [self.expand(template, combo) for combo in combinations(params)]

    def params(self, d: dict[str, object], path: str) -> dict[str, list[Scalar]]:
        out: dict[str, list[Scalar]] = {}
        for pname, raw in d.items():
            ppath = f"{path}.{pname}"
            if not PARAM_NAME_RE.match(pname):
                raise self.fail(ppath, f"{pname!r} is not a valid parameter name (an identifier)")
            values: list[Scalar] = []
            for j, v in enumerate(self.array(raw, ppath)):
                if not isinstance(v, (str, int, float)):  # bool is an int
                    raise self.fail(
                        f"{ppath}[{j}]",
                        f"expected a string, number or boolean, got {_type_name(v)}",
                    )
                values.append(v)
            if not values:
                raise self.fail(ppath, "empty list of values")
            out[pname] = values
        return out

    def expand(self, tpl: _Task, combo: dict[str, Scalar]) -> _Task:
        w = tpl.where

        def sub(text: str, path: str, *, quote: bool = False) -> str:
            try:
                return _expand(text, combo, quote=quote)
            except SweepError as exc:
                raise self.fail(path, str(exc)) from None

        command: tuple[str, ...] | str
        if isinstance(tpl.command, str):
            command = sub(tpl.command, _join(w, "command"), quote=True)
        else:
            cmd_path = _join(w, "command")
            command = tuple(sub(a, f"{cmd_path}[{i}]") for i, a in enumerate(tpl.command))
        t = _Task(
            where=w,
            note=describe(combo),
            id=sub(tpl.id, _join(w, "id")),
            command=command,
            outputs=tuple(sub(o, f"{_join(w, 'outputs')}[{i}]") for i, o in enumerate(tpl.outputs)),
            after=tuple(sub(a, f"{_join(w, 'after')}[{i}]") for i, a in enumerate(tpl.after)),
            retries=tpl.retries,
            timeout=tpl.timeout,
            env={k: sub(v, f"{_join(w, 'env')}.{k}") for k, v in tpl.env.items()},
            requirements=tpl.requirements,
        )
        return self.check_task(t)

    # --- the graph -------------------------------------------------------------------------

    def resolve(self, tasks: list[_Task], defaults: Requirements) -> list[TaskSpec]:
        """Expand `after` patterns, refuse duplicates, self-loops, cycles and output clashes;
        return the tasks in a topological order, ties broken by declaration order."""
        index: dict[str, int] = {}
        for n, t in enumerate(tasks):
            if t.id in index:
                first = tasks[index[t.id]]
                also = _join(first.where, "id") + (f" ({first.note})" if first.note else "")
                note = f"{t.note}; " if t.note else ""
                raise self.fail(
                    _join(t.where, "id"), f"duplicate task id {t.id!r} ({note}also {also})"
                )
            index[t.id] = n
        ids = list(index)
        preds: list[set[int]] = []
        for t in tasks:
            note = f" ({t.note})" if t.note else ""
            mine: set[int] = set()
            for j, pat in enumerate(t.after):
                path = f"{_join(t.where, 'after')}[{j}]"
                if _GLOB_CHARS.isdisjoint(pat):
                    matched = [pat] if pat in index else []
                else:
                    matched = [i for i in ids if fnmatchcase(i, pat)]
                if not matched:
                    raise self.fail(path, f"{pat!r} matches no task{note}")
                if t.id in matched:
                    if matched == [pat]:
                        raise self.fail(path, f"task {t.id!r} cannot run after itself")
                    raise self.fail(path, f"{pat!r} matches the task itself ({t.id!r}){note}")
                mine.update(index[m] for m in matched)
            preds.append(mine)
        order = self.toposort(tasks, preds)
        for n, t in enumerate(tasks):
            self.check_output_clash(t, [tasks[p] for p in sorted(preds[n])])
        return [
            TaskSpec(
                id=t.id,
                command=t.command,
                outputs=t.outputs,
                after=tuple(sorted(tasks[p].id for p in preds[n])),
                retries=t.retries,
                timeout=t.timeout,
                env=env_pairs(t.env),
                requirements=Requirements(**{**defaults.to_json(), **t.requirements}),
            )
            for n, t in ((n, tasks[n]) for n in order)
        ]

    def toposort(self, tasks: list[_Task], preds: list[set[int]]) -> list[int]:
        waiting = [len(p) for p in preds]
        succs: list[list[int]] = [[] for _ in tasks]
        for n, ps in enumerate(preds):
            for p in ps:
                succs[p].append(n)
        heap = [n for n, w in enumerate(waiting) if w == 0]
        heapq.heapify(heap)
        order: list[int] = []
        while heap:
            n = heapq.heappop(heap)
            order.append(n)
            for s in succs[n]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(heap, s)
        if len(order) < len(tasks):
            done = set(order)
            start = min(n for n in range(len(tasks)) if n not in done)
            path = [start]
            while True:  # walk predecessors inside the cycle until one repeats
                nxt = min(p for p in preds[path[-1]] if p not in done and waiting[p] > 0)
                if nxt in path:
                    cycle = [*path[path.index(nxt) :], nxt]
                    break
                path.append(nxt)
            first = tasks[cycle[0]]
            text = " after ".join(repr(tasks[c].id) for c in cycle)
            raise self.fail(_join(first.where, "after"), f"dependency cycle: {text}")
        return order

    def check_output_clash(self, t: _Task, preds: list[_Task]) -> None:
        """Predecessors' outputs all land in `t`'s working folder: they must not collide."""
        owner: dict[str, _Task] = {}
        for p in preds:
            for out in p.outputs:
                other = owner.get(out)
                if other is not None and other is not p:
                    self.clash(t, other, p, out, out)
                owner[out] = p
        for path, p in owner.items():
            parent = posixpath.dirname(path)
            while parent:
                other = owner.get(parent)
                if other is not None and other is not p:
                    self.clash(t, other, p, parent, path)
                parent = posixpath.dirname(parent)

    def clash(self, t: _Task, a: _Task, b: _Task, out_a: str, out_b: str) -> None:
        note = f" ({t.note})" if t.note else ""
        if out_a == out_b:
            what = f"both declare output {out_a!r}"
        else:
            what = f"declare clashing outputs {out_a!r} and {out_b!r}"
        raise self.fail(_join(t.where, "after"), f"predecessors {a.id!r} and {b.id!r} {what}{note}")
