"""Control-channel messages between daemons (coordinator <-> volunteer, coordinator <-> replica).

Every message is a frozen dataclass registered in :data:`CONTROL` under a :class:`Kind`. The
table with each message's meaning is in docs/protocol.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

from bonjourgrid.control.codec import Registry
from bonjourgrid.control.message_checks import Checked as _Checked


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
    CONDOR_JOIN = 26
    CONDOR_JOINED = 27
    VOTE_REQUEST = 28
    VOTE = 29
    BOINC_ATTACH = 30
    BOINC_ATTACHED = 31
    GIVE_BACK = 32


CONTROL = Registry("control")


@CONTROL.register(Kind.PING)
@dataclass(frozen=True)
class Ping(_Checked):
    """Ask a node for its current state (answered by Pong)."""


@CONTROL.register(Kind.PONG)
@dataclass(frozen=True)
class Pong(_Checked):
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
class Reserve(_Checked):
    """Coordinator -> Idle node: become my worker for ``app`` for ``lease`` seconds."""

    app: str
    coordinator: str
    coordinator_host: str
    term: int
    lease: float
    backend: str
    user: str = ""
    """The submitting user (as in the app's signature); "" when the app is unsigned."""
    signature: str = ""
    """``AppSignature.encode()`` of the app (app/signing.py), checked by the volunteer against
    its ``trusted_users`` before it accepts, whatever the backend; "" when unsigned."""
    bundle_sha256: str = ""
    """SHA-256 of the app bundle the signature covers (StageApp must carry the same)."""
    spec: dict[str, object] = field(default_factory=dict)
    """The app's task list (``AppSpec.to_json()``), part of what is signed."""
    ce_key: str = ""
    """The app's CE public key (64 hex digits, app/ce_key.py): for a signed app the one its
    signature covers; for an unsigned app the volunteer binds the app to it."""
    proof: str = ""
    """The CE key's proof of coordination over (app, term, coordinator, the volunteer's node
    id), hex; a volunteer refuses a Reserve without a valid one (also a re-homing)."""


@CONTROL.register(Kind.RESERVE_REPLY)
@dataclass(frozen=True)
class ReserveReply(_Checked):
    app: str
    accepted: bool
    reason: str
    slots: int


@CONTROL.register(Kind.HEARTBEAT)
@dataclass(frozen=True)
class Heartbeat(_Checked):
    """Coordinator -> worker: I am alive; renew the lease."""

    app: str
    term: int
    lease: float


@CONTROL.register(Kind.HEARTBEAT_ACK)
@dataclass(frozen=True)
class HeartbeatAck(_Checked):
    app: str
    term: int
    running: tuple[str, ...]


@CONTROL.register(Kind.RELEASE)
@dataclass(frozen=True)
class Release(_Checked):
    """Coordinator -> worker: you are free (back to Idle)."""

    app: str
    term: int
    reason: str


@CONTROL.register(Kind.STAGE_APP)
@dataclass(frozen=True)
class StageApp(_Checked):
    """Coordinator -> worker: the app's files, as one bundle."""

    app: str
    term: int
    sha256: str
    bundle: bytes


@CONTROL.register(Kind.STAGE_ACK)
@dataclass(frozen=True)
class StageAck(_Checked):
    app: str
    sha256: str
    ok: bool
    error: str


@CONTROL.register(Kind.RUN_TASK)
@dataclass(frozen=True)
class RunTask(_Checked):
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
    memory_mb: int = 0
    """The task's memory cap (its requirements.memory_mb); 0: the volunteer's default cap."""
    network: bool = False
    """Whether the task asked for the network (requirements.network); isolated otherwise."""


@CONTROL.register(Kind.TASK_RESULT)
@dataclass(frozen=True)
class TaskResult(_Checked):
    app: str
    task: str
    attempt: int
    exit_code: int | None
    seconds: float
    error: str
    outputs: bytes
    outputs_sha256: str


NO_FREE_SLOT = "no free slot here"
"""How a worker's refusal of a ``RunTask`` beyond its free slots begins (``TaskResult.error``):
the attempt never ran, so the coordinator requeues it without counting it against the task's
retries (a coordinator whose view of the worker's slots was stale, e.g. just after a
takeover, must not fail the task)."""


def failed_result(
    app: str, task: str, attempt: int, error: str, seconds: float = 0.0
) -> TaskResult:
    """An attempt that produced no outputs, with ``error`` saying why (the hash is that of no
    bytes, so the coordinator reads the error, not "corrupted in transit", and stages
    nothing)."""
    return TaskResult(app, task, attempt, None, seconds, error, b"", hashlib.sha256().hexdigest())


def is_refusal(r: TaskResult) -> bool:
    """``r`` is a worker's refusal to run the attempt at all (no free slot)."""
    return r.exit_code is None and r.error.startswith(NO_FREE_SLOT)


@CONTROL.register(Kind.APP_ENDED)
@dataclass(frozen=True)
class AppEnded(_Checked):
    """Coordinator -> workers and replicas: the app finished or was cancelled (said before
    the coordinator record's goodbye)."""

    app: str
    term: int
    outcome: str


@CONTROL.register(Kind.ERROR)
@dataclass(frozen=True)
class Error(_Checked):
    reason: str


@CONTROL.register(Kind.CANCEL_TASK)
@dataclass(frozen=True)
class CancelTask(_Checked):
    app: str
    task: str
    attempt: int


@CONTROL.register(Kind.RESULT_ACK)
@dataclass(frozen=True)
class ResultAck(_Checked):
    """Coordinator -> worker: the result of (task, attempt) is committed; drop your copy.
    A worker ignores it when ``term`` is below the highest term it has seen for the app."""

    app: str
    task: str
    attempt: int
    term: int = 0


# --- replication and apps on the LAN (issue 4) ---------------------------------------------


@CONTROL.register(Kind.REPLICA_OPEN)
@dataclass(frozen=True)
class ReplicaOpen(_Checked):
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
    signature: str = ""
    """The app's signature (``AppSignature.encode()``), so a replica that takes over can
    still recruit volunteers with a ``trusted_users`` list; "" when unsigned."""
    signer: str = ""
    """The user name in the signature."""
    ce_secret: str = ""
    """The app's private CE key (hex), so that an elected replica can prove it coordinates
    the app when it re-homes the workers (travels only on the authenticated channel)."""


@CONTROL.register(Kind.JOURNAL_APPEND)
@dataclass(frozen=True)
class JournalAppend(_Checked):
    """Coordinator -> replica: journal entry number ``seq`` (and a finished task's files)."""

    app: str
    term: int
    seq: int
    entry: str
    host: str
    outputs: bytes


@CONTROL.register(Kind.JOURNAL_ACK)
@dataclass(frozen=True)
class JournalAck(_Checked):
    """Replica -> coordinator: entries up to ``seq`` and replica set version ``members`` are
    durable here. ``ok`` False: resend a snapshot (a gap), or this replica follows a higher
    ``term`` (it voted for another candidate), which fences the sender."""

    app: str
    term: int
    seq: int
    ok: bool
    members: int = 0


@CONTROL.register(Kind.REPLICAS)
@dataclass(frozen=True)
class Replicas(_Checked):
    """Coordinator -> replicas: the replica set, best-ranked first (faulttolerance/quorum.py).
    ``version`` counts its changes; while ``joint``, ``old`` is the set before the last change
    and quorums of both count. Answered with ``JournalAck(members=version)``."""

    app: str
    term: int
    replicas: tuple[str, ...]
    version: int = 0
    old: tuple[str, ...] = ()
    joint: bool = False


@CONTROL.register(Kind.APP_QUERY)
@dataclass(frozen=True)
class AppQuery(_Checked):
    """Anyone -> a daemon: what do you know of ``app``? Answered with ``AppState``."""

    app: str


@CONTROL.register(Kind.APP_STATE)
@dataclass(frozen=True)
class AppState(_Checked):
    """``role`` is "" when the daemon does not hold the app."""

    app: str
    term: int
    role: str
    coordinating: bool
    complete: bool


@CONTROL.register(Kind.FETCH_APP)
@dataclass(frozen=True)
class FetchApp(_Checked):
    """Anyone -> a holder: send ``app``'s results (answered with ``AppResults`` or ``Error``)."""

    app: str
    proof: str = ""
    """``RequestProof.encode()`` (app/request_proof.py) by the submitter's key, action
    "results", naming the sender's node; a signed app is answered only with a valid one."""


@CONTROL.register(Kind.APP_RESULTS)
@dataclass(frozen=True)
class AppResults(_Checked):
    app: str
    name: str
    term: int
    complete: bool
    outcome: str
    results: dict[str, object]
    outputs: bytes
    manifest: str = ""
    """The result manifest of this answer (coordinator/manifest.py): checked by the asker."""
    manifest_signature: str = ""
    """Signature of ``manifest`` by the app's CE key; "" until signature v2 provides one."""


@CONTROL.register(Kind.CANCEL_APP)
@dataclass(frozen=True)
class CancelApp(_Checked):
    """Anyone -> the coordinator: cancel ``app`` (answered with ``AppState`` or ``Error``)."""

    app: str
    reason: str
    proof: str = ""
    """As in ``FetchApp``, with action "cancel"."""


@CONTROL.register(Kind.FENCED)
@dataclass(frozen=True)
class Fenced(_Checked):
    """Volunteer -> coordinator: app ``app`` has a coordinator with the higher ``term``
    now; the asker coordinates it no more (it steps down). Sent instead of a reply."""

    app: str
    term: int


# --- backends with their own middleware (issues 5 and 6) -----------------------------------


@CONTROL.register(Kind.CONDOR_JOIN)
@dataclass(frozen=True)
class CondorJoin(_Checked):
    """Coordinator -> recruited worker: join this CE's HTCondor pool (start a startd).

    ``token`` is the worker's IDTOKEN (identity ``<node>@workers.<ce_id>.bjgrid``), signed by
    the CE's own key; it only ever travels over the authenticated control channel.
    """

    app: str
    term: int
    ce_id: str
    collector_host: str
    collector_port: int
    token: str


@CONTROL.register(Kind.CONDOR_JOINED)
@dataclass(frozen=True)
class CondorJoined(_Checked):
    """Worker -> coordinator: its startd runs (``machine``: its HTCondor Machine name), or
    why it could not join."""

    app: str
    ok: bool
    error: str
    machine: str


@CONTROL.register(Kind.BOINC_ATTACH)
@dataclass(frozen=True)
class BoincAttach(_Checked):
    """Coordinator -> recruited worker: attach your BOINC client to the app's project
    (``master_url``, with the account ``authenticator`` made for this worker)."""

    app: str
    term: int
    master_url: str
    authenticator: str
    project_name: str


@CONTROL.register(Kind.BOINC_ATTACHED)
@dataclass(frozen=True)
class BoincAttached(_Checked):
    """Worker -> coordinator: the client is attached (``client``: how the project knows it),
    or why it could not attach."""

    app: str
    ok: bool
    error: str
    client: str


# --- election (issue 4) --------------------------------------------------------------------


@CONTROL.register(Kind.VOTE_REQUEST)
@dataclass(frozen=True)
class VoteRequest(_Checked):
    """Replica -> the other replicas of ``app``: make me coordinator of ``term`` (my journal
    ends at ``seq``, received in ``last_term``, with replica set version ``members``)."""

    app: str
    term: int
    candidate: str
    seq: int
    last_term: int
    members: int = 0


@CONTROL.register(Kind.VOTE)
@dataclass(frozen=True)
class Vote(_Checked):
    """The answer to ``VoteRequest``: granted or not (and why), with the voter's term."""

    app: str
    term: int
    granted: bool
    reason: str


# --- owner policy (issue 7) ----------------------------------------------------------------


@CONTROL.register(Kind.GIVE_BACK)
@dataclass(frozen=True)
class GiveBack(_Checked):
    """Worker -> coordinator: the owner needs the machine; attempt (task, attempt) was
    stopped and will not finish here. Requeued without counting against the task's retries."""

    app: str
    task: str
    attempt: int
    reason: str
