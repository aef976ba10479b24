"""The simulated control-channel messages that are still copies (issue 13's next increment).

The election speaks the product's own ``bonjourgrid.control.messages`` (``VoteRequest``,
``Vote``, ``AppQuery``, ``AppState``) through the shared replica engine (bonjourgrid/engine).
What is left here mirrors the coordinator side of the protocol (Reserve -> ReserveReply,
Heartbeat -> HeartbeatAck, StageApp -> StageAck, RunTask -> TaskResult -> ResultAck, Release,
AppEnded) without bytes or MACs, plus the journal stream in a batched form (``JournalAppend``,
not the product's ``ReplicaOpen``/``JournalAppend``/``Replicas``) and ``Stale``: "my term is
higher than yours". A task's behaviour travels in ``RunTask`` (how long it runs, how it
exits) since nothing is executed. These go when the coordinator side runs on an engine too.
"""

from __future__ import annotations

from dataclasses import dataclass

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.faulttolerance.entries import Entry
from bonjourgrid.faulttolerance.quorum import Members

Key = tuple[str, int]
"""(task id, attempt): the idempotency key of a result."""


# --- coordinator -> volunteer --------------------------------------------------------------


@dataclass(frozen=True)
class Reserve:
    app: str
    coordinator: str
    term: int
    lease: float


@dataclass(frozen=True)
class StageApp:
    app: str
    term: int


@dataclass(frozen=True)
class Heartbeat:
    app: str
    term: int
    lease: float


@dataclass(frozen=True)
class RunTask:
    app: str
    term: int
    task: str
    attempt: int
    cpus: int
    duration: float
    exit_code: int


@dataclass(frozen=True)
class CancelTask:
    app: str
    term: int
    task: str
    attempt: int


@dataclass(frozen=True)
class ResultAck:
    """Committed: drop your copy. A worker ignores it from a term below the one it follows
    (a stale coordinator must not make it drop a result the new one needs)."""

    app: str
    task: str
    attempt: int
    term: int


@dataclass(frozen=True)
class Release:
    app: str
    term: int


@dataclass(frozen=True)
class AppEnded:
    """Said to replicas (and workers) before the end; replicas answer ``AppEndedAck``."""

    app: str
    term: int
    outcome: str
    journal_len: int


# --- volunteer -> coordinator --------------------------------------------------------------


@dataclass(frozen=True)
class ReserveReply:
    """Accepted or not; on a re-home, what the worker runs and which results it holds."""

    app: str
    term: int
    accepted: bool
    reason: str
    slots: int
    running: tuple[Key, ...] = ()
    held: tuple[Key, ...] = ()


@dataclass(frozen=True)
class StageAck:
    app: str
    term: int
    ok: bool


@dataclass(frozen=True)
class HeartbeatAck:
    app: str
    term: int
    running: tuple[Key, ...]


@dataclass(frozen=True)
class TaskResult:
    app: str
    task: str
    attempt: int
    exit_code: int
    seconds: float


@dataclass(frozen=True)
class Stale:
    """The receiver knows a higher term for ``app`` (or serves something else: term 0)."""

    app: str
    term: int
    serving: bool


# --- coordinator <-> replicas --------------------------------------------------------------


@dataclass(frozen=True)
class JournalAppend:
    """Entries ``start..`` of the coordinator's journal and its replica set; also its
    heartbeat to replicas. ``workers`` are the linked workers (what a new coordinator
    re-homes)."""

    app: str
    term: int
    coordinator: str
    spec: AppSpec
    start: int
    entries: tuple[Entry, ...]
    members: Members
    workers: tuple[str, ...]


@dataclass(frozen=True)
class JournalAck:
    """The replica holds ``length`` entries and set version ``members`` of ``term``."""

    app: str
    term: int
    length: int
    members: int


@dataclass(frozen=True)
class AppEndedAck:
    app: str
    term: int


@dataclass(frozen=True)
class TermQuery:
    """A coordinator saw a rival ``_bjg-coord`` record for its app: which term do you hold?"""

    app: str
    term: int
