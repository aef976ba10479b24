"""The simulated control-channel messages.

They mirror ``bonjourgrid.control.messages`` (Reserve -> ReserveReply, Heartbeat ->
HeartbeatAck, StageApp -> StageAck, RunTask -> TaskResult -> ResultAck, Release, AppEnded)
without bytes or MACs, plus what the replica protocol needs (journal streaming, the
takeover's journal sync, and ``Stale``: "my term is higher than yours"). A task's behaviour
travels in ``RunTask`` (how long it runs, how it exits) since nothing is executed.
"""

from __future__ import annotations

from dataclasses import dataclass

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.faulttolerance.entries import Entry

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
    app: str
    task: str
    attempt: int


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
    """Entries ``start..`` of the coordinator's journal; also its heartbeat to replicas.

    ``replicas`` is the ranked replica list, ``workers`` the linked workers (what a taking-over
    replica re-homes).
    """

    app: str
    term: int
    coordinator: str
    spec: AppSpec
    start: int
    entries: tuple[Entry, ...]
    replicas: tuple[str, ...]
    workers: tuple[str, ...]


@dataclass(frozen=True)
class JournalAck:
    app: str
    term: int
    length: int


@dataclass(frozen=True)
class AppEndedAck:
    app: str
    term: int


@dataclass(frozen=True)
class SyncRequest:
    """A taking-over replica asks its peers for their journals (it claims ``term``)."""

    app: str
    term: int


@dataclass(frozen=True)
class SyncReply:
    app: str
    term: int
    journal_term: int
    entries: tuple[Entry, ...]
    workers: tuple[str, ...]


@dataclass(frozen=True)
class PreVote:
    """A replica that suspects the coordinator asks: have you heard from it lately?"""

    app: str
    term: int


@dataclass(frozen=True)
class PreVoteReply:
    app: str
    term: int
    granted: bool
    """True: this machine has not heard from the coordinator lately either."""


@dataclass(frozen=True)
class TermQuery:
    """A coordinator saw a rival ``_bjg-coord`` record for its app: which term do you hold?"""

    app: str
    term: int


@dataclass(frozen=True)
class ProbeRequest:
    """A replica with no one to ask asks a bystander to probe the coordinator for it."""

    app: str
    term: int
    coordinator: str


@dataclass(frozen=True)
class Probe:
    """Bystander -> coordinator: do you coordinate ``app``? (answered by ``ProbeAck``)"""

    app: str


@dataclass(frozen=True)
class ProbeAck:
    app: str
