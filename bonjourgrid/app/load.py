"""Read and validate app.json (format version 1) into an `AppSpec`.

Validation stops at the first problem and reports it as `AppError`, whose text names the
file, the field path (`tasks[2].after[0]`, `sweeps[0].template.id`) and the problem:

    squares/app.json: tasks[2].after[0]: 'sq-*x' matches no task

This module reads the file (or the folder holding it), the top-level fields and `files`
(checked against the app folder); the fields' typed reads are in fields.py, the tasks and
sweeps in tasks.py, the dependency graph in task_graph.py.

The format is documented in docs/app-format.md and described by app.schema.json.
"""

from __future__ import annotations

import json
import os
import posixpath
from importlib import resources
from pathlib import Path

from bonjourgrid.app.bundle import BundleError, check_relpath, check_tree
from bonjourgrid.app.fields import AppError, Fields
from bonjourgrid.app.spec import BACKENDS, FORMAT_VERSION, MAX_WEIGHT, AppSpec, Requirements
from bonjourgrid.app.task_graph import resolve
from bonjourgrid.app.tasks import read_sweep, read_task

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
    f = Fields(source)
    top = f.obj(data, "", APP_KEYS)
    if "$schema" in top:
        f.string(top["$schema"], "$schema")
    version = FORMAT_VERSION
    if "version" in top:
        version = f.integer(top["version"], "version", -(2**63))
        if version != FORMAT_VERSION:
            raise f.fail("version", f"unsupported version {version} (this bjgrid reads version 1)")
    name = f.name(f.require(top, "name", ""), "name", "app name")
    files = _files(f, top.get("files", []), app_dir)
    workers: int | None = None
    if top.get("workers") is not None:
        workers = f.integer(top["workers"], "workers", 1)
    replicas = f.integer(top.get("replicas", 0), "replicas", 0)
    backend = f.string(top.get("backend", BACKENDS[0]), "backend")
    if backend not in BACKENDS:
        raise f.fail(
            "backend", f"unknown backend {backend!r} (expected one of: {', '.join(BACKENDS)})"
        )
    weight = f.integer(top.get("weight", 1), "weight", 1)
    if weight > MAX_WEIGHT:
        raise f.fail("weight", f"{weight} is above {MAX_WEIGHT}")
    wait_timeout = None
    if top.get("wait_timeout") is not None:
        wait_timeout = f.timeout(top["wait_timeout"], "wait_timeout")
    defaults = Requirements(**f.requirements(top.get("requirements", {}), "requirements"))
    tasks = [
        read_task(f, t, f"tasks[{i}]") for i, t in enumerate(f.array(top.get("tasks", []), "tasks"))
    ]
    for i, s in enumerate(f.array(top.get("sweeps", []), "sweeps")):
        tasks.extend(read_sweep(f, s, f"sweeps[{i}]"))
    if not tasks:
        raise f.fail("tasks", "no tasks (declare at least one in 'tasks' or 'sweeps')")
    return AppSpec(
        name=name,
        tasks=tuple(resolve(f, tasks, defaults)),
        files=files,
        workers=workers,
        replicas=replicas,
        backend=backend,
        requirements=defaults,
        version=version,
        weight=weight,
        wait_timeout=wait_timeout,
    )


def _files(f: Fields, value: object, app_dir: Path | None) -> tuple[str, ...]:
    out: list[str] = []
    for i, raw in enumerate(f.strings(value, "files")):
        path = f"files[{i}]"
        why = check_relpath(raw)
        if why is not None:
            raise f.fail(path, f"{raw!r}: {why} (files must stay inside the app folder)")
        rel = posixpath.normpath(raw)
        if rel in out:
            raise f.fail(path, f"{raw!r} is listed twice")
        out.append(rel)
        if app_dir is not None:
            _check_file(f, raw, rel, path, app_dir)
    return tuple(out)


def _check_file(f: Fields, raw: str, rel: str, path: str, app_dir: Path) -> None:
    """`files[i]` exists in the app folder, stays inside it, and its tree is safe to ship."""
    full = app_dir / rel
    if not os.path.lexists(full):
        raise f.fail(path, f"{raw!r} does not exist in the app folder")
    real, real_root = os.path.realpath(full), os.path.realpath(app_dir)
    if not real.startswith(real_root.rstrip("/") + "/"):
        raise f.fail(path, f"{raw!r} resolves outside the app folder")
    if raw.endswith("/") and not os.path.isdir(full):
        raise f.fail(path, f"{raw!r} is not a folder")
    try:
        check_tree(app_dir, [rel], label="the app folder")
    except BundleError as exc:
        raise f.fail(path, f"{exc.path!r}: {exc.problem}") from None
