"""The resolved application model: what `bjgrid submit app.json` runs.

An `AppSpec` is the validated, fully expanded form of an app.json: sweeps are expanded into
plain tasks, `after` globs are resolved to concrete predecessor ids, and each task carries its
effective requirements (app-level defaults overridden per field). Specs are immutable; they are
built by `bonjourgrid.app.load` and shipped/journaled through `to_json` / `from_json`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

FORMAT_VERSION = 1
"""The only app.json format version this code reads and writes."""

BACKENDS = ("embedded", "condor", "boinc")
"""CE backends an app may ask for; the first is the default."""

DEFAULT_RETRIES = 2
"""A task is retried twice after a failed attempt unless it says otherwise."""

ATTRIBUTE_NAME_PATTERN = r"[a-z0-9][a-z0-9_]{0,15}"
"""A custom attribute's name, as a volunteer's TXT record carries it (discovery/txt.py)."""
MAX_WEIGHT = 1000
"""Largest fair-share weight an app may claim (TXT ``wt``)."""


@dataclass(frozen=True)
class Requirements:
    """What a machine must offer to run a task (and what the sandbox gives it: `memory_mb`
    is its memory cap, `network` its access to the network). `os`/`arch` None means "any"."""

    cpus: int = 1
    memory_mb: int = 0
    os: str | None = None
    arch: str | None = None
    network: bool = False
    """The task needs the network; without it, a volunteer runs it with none (loopback only)."""
    attributes: tuple[tuple[str, str], ...] = ()
    """Custom attributes a volunteer must declare with exactly these values (sorted by name).
    A mapping is accepted too (the loader merges ``to_json`` dicts) and stored sorted."""

    def __post_init__(self) -> None:
        attrs: object = self.attributes
        if isinstance(attrs, Mapping):
            object.__setattr__(self, "attributes", tuple(sorted(attrs.items())))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "os": self.os,
            "arch": self.arch,
            # Always written: a task's false must override an app-level true on reload.
            "network": self.network,
        }
        if self.attributes:  # absent when empty
            out["attributes"] = dict(self.attributes)
        return out


@dataclass(frozen=True)
class TaskSpec:
    """One task. `command` is an argv tuple (run without a shell) or a string (`/bin/sh -c`).

    `after` holds the concrete predecessor ids (globs already expanded), sorted. `env` is a
    sorted tuple of (name, value) pairs so the spec stays hashable; use `env_dict()`.
    """

    id: str
    command: tuple[str, ...] | str
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    retries: int = DEFAULT_RETRIES
    timeout: float | None = None
    env: tuple[tuple[str, str], ...] = ()
    requirements: Requirements = field(default_factory=Requirements)

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def uses_shell(self) -> bool:
        return isinstance(self.command, str)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "command": self.command if isinstance(self.command, str) else list(self.command),
            "outputs": list(self.outputs),
            "after": list(self.after),
            "retries": self.retries,
        }
        if self.timeout is not None:
            out["timeout"] = self.timeout
        out["env"] = dict(self.env)
        out["requirements"] = self.requirements.to_json()
        return out


def env_pairs(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The canonical (sorted) form of a task environment."""
    return tuple(sorted(env.items()))


@dataclass(frozen=True)
class AppSpec:
    """A validated application: tasks in a topological order (ties by declaration order)."""

    name: str
    tasks: tuple[TaskSpec, ...]
    files: tuple[str, ...] = ()
    workers: int | None = None
    replicas: int = 0
    backend: str = "embedded"
    requirements: Requirements = field(default_factory=Requirements)
    version: int = FORMAT_VERSION
    weight: int = 1
    """Fair-share weight against rival apps (coordinator/fairshare.py): 2 claims twice as many
    machines as 1 when users compete for too few."""
    wait_timeout: float | None = None
    """Seconds the app may go without any worker before the grid fails it; None (the
    default): it waits for volunteers as long as it takes, as an HTCondor job does."""

    def task(self, id: str) -> TaskSpec:
        """The task named `id`; KeyError if there is none."""
        return self._by_id[id]

    @cached_property
    def _by_id(self) -> dict[str, TaskSpec]:
        # cached_property writes the instance __dict__ directly, so it works on a frozen class.
        return {t.id: t for t in self.tasks}

    @cached_property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tasks)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that is itself a valid app.json (no sweeps, no globs).

        `from_json(spec.to_json()) == spec` for every spec that `load_app` can produce.
        """
        out: dict[str, Any] = {"version": self.version, "name": self.name}
        out["files"] = list(self.files)
        out["tasks"] = [t.to_json() for t in self.tasks]
        if self.workers is not None:
            out["workers"] = self.workers
        out["replicas"] = self.replicas
        out["backend"] = self.backend
        out["requirements"] = self.requirements.to_json()
        if self.weight != 1:  # absent when default: specs journaled and signed before stay the same
            out["weight"] = self.weight
        if self.wait_timeout is not None:  # likewise
            out["wait_timeout"] = self.wait_timeout
        return out

    @classmethod
    def from_json(cls, data: object, *, source: str = "<app spec>") -> AppSpec:
        """Rebuild a spec from `to_json` output, re-validating it (raises `AppError`).

        Paths are checked for shape only: the app folder is not at hand here.
        """
        from bonjourgrid.app.load import parse_app  # load builds on this module

        return parse_app(data, app_dir=None, source=source)
