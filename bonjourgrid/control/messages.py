"""Control-channel messages between daemons (coordinator <-> volunteer, coordinator <-> replica).

Every message is a frozen dataclass registered in :data:`CONTROL` under a :class:`Kind`. The
table with each message's meaning is in docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from bonjourgrid.control.codec import Registry


class Kind(IntEnum):
    """Wire kinds of CONTROL messages.

    ONLY APPEND: the numbers are the protocol. Never renumber or reuse a retired number.
    """

    PING = 1
    PONG = 2
    RESERVE = 3
    RESERVE_REPLY = 4
    HEARTBEAT = 5
    HEARTBEAT_ACK = 6
    RELEASE = 7
    STAGE_APP = 8
    STAGE_ACK = 9
    RUN_TASK = 10
    TASK_RESULT = 11
    APP_ENDED = 12
    ERROR = 13
    CANCEL_TASK = 14
    RESULT_ACK = 15
    REPLICA_OPEN = 16
    JOURNAL_APPEND = 17
    JOURNAL_ACK = 18
    REPLICAS = 19
    APP_QUERY = 20
    APP_STATE = 21
    FETCH_APP = 22
    APP_RESULTS = 23
    CANCEL_APP = 24
    FENCED = 25


CONTROL = Registry("control")


@CONTROL.register(Kind.PING)
@dataclass(frozen=True)
class Ping:
    """Ask a node for its current state (answered by Pong)."""


@CONTROL.register(Kind.PONG)
@dataclass(frozen=True)
class Pong:
    node: str
    host: str
    state: str
    app: str | None
    coordinator: str | None
    cpus: int
    slots: int
    free_slots: int
    coordinates: tuple[str, ...]
    backends: tuple[str, ...]


@CONTROL.register(Kind.RESERVE)
@dataclass(frozen=True)
class Reserve:
    """Coordinator -> Idle node: become my worker for ``app`` for ``lease`` seconds."""

    app: str
    coordinator: str
    coordinator_host: str
    term: int
    lease: float
    backend: str


@CONTROL.register(Kind.RESERVE_REPLY)
@dataclass(frozen=True)
class ReserveReply:
    app: str
    accepted: bool
    reason: str
    slots: int


@CONTROL.register(Kind.HEARTBEAT)
@dataclass(frozen=True)
class Heartbeat:
    """Coordinator -> worker: I am alive; renew the lease."""

    app: str
    term: int
    lease: float


@CONTROL.register(Kind.HEARTBEAT_ACK)
@dataclass(frozen=True)
class HeartbeatAck:
    app: str
    term: int
    running: tuple[str, ...]


@CONTROL.register(Kind.RELEASE)
@dataclass(frozen=True)
class Release:
    """Coordinator -> worker: you are free (back to Idle)."""

    app: str
    term: int
    reason: str


@CONTROL.register(Kind.STAGE_APP)
@dataclass(frozen=True)
class StageApp:
    """Coordinator -> worker: the app's files, as one bundle."""

    app: str
    term: int
    sha256: str
    bundle: bytes


@CONTROL.register(Kind.STAGE_ACK)
@dataclass(frozen=True)
class StageAck:
    app: str
    sha256: str
    ok: bool
    error: str


@CONTROL.register(Kind.RUN_TASK)
@dataclass(frozen=True)
class RunTask:
    app: str
    term: int
    task: str
    attempt: int
    argv: tuple[str, ...]
    env: dict[str, str]
    timeout: float | None
    cpus: int
    outputs: tuple[str, ...]
    inputs: bytes
    inputs_sha256: str


@CONTROL.register(Kind.TASK_RESULT)
@dataclass(frozen=True)
class TaskResult:
    app: str
    task: str
    attempt: int
    exit_code: int | None
    seconds: float
    error: str
    outputs: bytes
    outputs_sha256: str


@CONTROL.register(Kind.APP_ENDED)
@dataclass(frozen=True)
class AppEnded:
    """Coordinator -> workers and replicas: the app finished or was cancelled (said before
    the coordinator record's goodbye)."""

    app: str
    term: int
    outcome: str


@CONTROL.register(Kind.ERROR)
@dataclass(frozen=True)
class Error:
    reason: str


@CONTROL.register(Kind.CANCEL_TASK)
@dataclass(frozen=True)
class CancelTask:
    app: str
    task: str
    attempt: int


@CONTROL.register(Kind.RESULT_ACK)
@dataclass(frozen=True)
class ResultAck:
    """Coordinator -> worker: the result of (task, attempt) is committed; drop your copy."""

    app: str
    task: str
    attempt: int


# --- replication and apps on the LAN (issue 4) ---------------------------------------------


@CONTROL.register(Kind.REPLICA_OPEN)
@dataclass(frozen=True)
class ReplicaOpen:
    """Coordinator -> worker: keep this app's journal. A snapshot: everything up to ``seq``.

    ``entries`` is the journal so far (JSON lines, see faulttolerance/entries.py), ``outputs``
    a tar of every committed task's files, ``replicas`` the election ranks (best first).
    """

    app: str
    term: int
    coordinator: str
    coordinator_host: str
    spec: dict[str, object]
    bundle: bytes
    digest: str
    user: str
    replicas: tuple[str, ...]
    hosts: dict[str, str]
    seq: int
    entries: str
    outputs: bytes


@CONTROL.register(Kind.JOURNAL_APPEND)
@dataclass(frozen=True)
class JournalAppend:
    """Coordinator -> replica: journal entry number ``seq`` (and a finished task's files)."""

    app: str
    term: int
    seq: int
    entry: str
    host: str
    outputs: bytes


@CONTROL.register(Kind.JOURNAL_ACK)
@dataclass(frozen=True)
class JournalAck:
    """Replica -> coordinator: entries up to ``seq`` are durable here. ``ok`` False: resend
    a snapshot (a gap, or this replica follows a higher ``term``, which fences the sender)."""

    app: str
    term: int
    seq: int
    ok: bool


@CONTROL.register(Kind.REPLICAS)
@dataclass(frozen=True)
class Replicas:
    """Coordinator -> replicas: the election ranks changed (best first)."""

    app: str
    term: int
    replicas: tuple[str, ...]


@CONTROL.register(Kind.APP_QUERY)
@dataclass(frozen=True)
class AppQuery:
    """Anyone -> a daemon: what do you know of ``app``? Answered with ``AppState``."""

    app: str


@CONTROL.register(Kind.APP_STATE)
@dataclass(frozen=True)
class AppState:
    """``role`` is "" when the daemon does not hold the app."""

    app: str
    term: int
    role: str
    coordinating: bool
    complete: bool


@CONTROL.register(Kind.FETCH_APP)
@dataclass(frozen=True)
class FetchApp:
    """Anyone -> a holder: send ``app``'s results (answered with ``AppResults`` or ``Error``)."""

    app: str


@CONTROL.register(Kind.APP_RESULTS)
@dataclass(frozen=True)
class AppResults:
    app: str
    name: str
    term: int
    complete: bool
    outcome: str
    results: dict[str, object]
    outputs: bytes


@CONTROL.register(Kind.CANCEL_APP)
@dataclass(frozen=True)
class CancelApp:
    """Anyone -> the coordinator: cancel ``app`` (answered with ``AppState`` or ``Error``)."""

    app: str
    reason: str


@CONTROL.register(Kind.FENCED)
@dataclass(frozen=True)
class Fenced:
    """Volunteer -> coordinator: app ``app`` has a coordinator with the higher ``term``
    now; the asker coordinates it no more (it steps down). Sent instead of a reply."""

    app: str
    term: int
