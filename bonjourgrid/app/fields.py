"""Typed reads of decoded app.json values, each failing as `AppError` with the field's path.

Kept apart from the app, task and graph readers (load.py, tasks.py, task_graph.py) because
all three check the same kinds of fields the same way, and an error must always name the
file and the field path (`tasks[2].after[0]`) whatever stage found it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from bonjourgrid.app.spec import ATTRIBUTE_NAME_PATTERN

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""App names and task ids: safe as a file name, a DNS-SD TXT value and a folder name."""
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64"
REQUIREMENT_KEYS = ("cpus", "memory_mb", "os", "arch", "network", "attributes")
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


def type_name(value: object) -> str:
    """`value`'s JSON type, as an error message names it."""
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


def join(path: str, key: str) -> str:
    """The field path of `key` inside the object at `path` ('' is the top level)."""
    return f"{path}.{key}" if path else key


class Fields:
    """The typed accessors of one app.json (`source` names it in every error)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> AppError:
        return AppError(self.source, path, problem)

    def obj(self, value: object, path: str, keys: tuple[str, ...] | None) -> dict[str, object]:
        """`value` as an object whose keys are all in `keys` (None: any key)."""
        if not isinstance(value, dict):
            what = "a JSON object at the top level" if not path else "an object"
            raise self.fail(path, f"expected {what}, got {type_name(value)}")
        for key in value:
            if keys is not None and key not in keys:
                raise self.fail(
                    join(path, key), f"unknown key (expected one of: {', '.join(keys)})"
                )
        return value

    def require(self, d: dict[str, object], key: str, path: str) -> object:
        if key not in d:
            raise self.fail(path, f"missing required key {key!r}")
        return d[key]

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {type_name(value)}")
        return value

    def integer(self, value: object, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {type_name(value)}")
        if value < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {value}")
        return value

    def array(self, value: object, path: str) -> list[object]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected an array, got {type_name(value)}")
        return value

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(self.array(value, path)))

    def name(self, value: object, path: str, what: str) -> str:
        text = self.string(value, path)
        if not NAME_RE.match(text):
            raise self.fail(path, f"{text!r} is not a valid {what} ({NAME_RULE} characters)")
        return text

    def timeout(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number of seconds, got {type_name(value)}")
        if not math.isfinite(value) or value <= 0:
            raise self.fail(path, f"must be a positive number of seconds, got {value}")
        return float(value)

    def requirements(self, value: object, path: str) -> dict[str, Any]:
        """The requirement fields present in `value` (task-level ones override per field)."""
        d = self.obj(value, path, REQUIREMENT_KEYS)
        out: dict[str, Any] = {}
        if "cpus" in d:
            out["cpus"] = self.integer(d["cpus"], join(path, "cpus"), 1)
        if "memory_mb" in d:
            out["memory_mb"] = self.integer(d["memory_mb"], join(path, "memory_mb"), 0)
        for key in ("os", "arch"):
            if key in d:
                out[key] = None if d[key] is None else self.string(d[key], join(path, key))
        if "network" in d:
            if not isinstance(d["network"], bool):
                raise self.fail(join(path, "network"), "expected true or false")
            out["network"] = d["network"]
        if "attributes" in d:
            out["attributes"] = self.attributes(d["attributes"], join(path, "attributes"))
        return out

    def attributes(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        """Custom attributes a volunteer must declare: names as in its TXT record, string values."""
        d = self.obj(value, path, None)
        for k, v in d.items():
            if not ATTRIBUTE_NAME.fullmatch(k):
                raise self.fail(
                    join(path, k), "attribute names are a-z, 0-9 and '_' (at most 16 characters)"
                )
            self.string(v, join(path, k))
        return tuple(sorted((k, str(v)) for k, v in d.items()))
