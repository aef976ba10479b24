"""What goes into a ``ReplicaEngine`` (events) and what comes out (actions).

Every event and action is a frozen dataclass. Times are the shell's clock readings (the
daemon's ``time.monotonic()``, the simulation's virtual clock), passed in: the engine never
reads a clock. Messages that cross the wire are the real ``bonjourgrid.control.messages``
classes (``VoteRequest``, ``Vote``, ``AppQuery``), so the daemon and the simulation exchange
exactly the same things.
"""

from __future__ import annotations

from dataclasses import dataclass

from bonjourgrid.control.messages import AppQuery, Vote, VoteRequest
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter

# --- events: the shell tells the engine ---------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Time passed: the engine acts on what is due at ``now`` (see ``ReplicaEngine.wake_at``)."""

    now: float


@dataclass(frozen=True)
class CoordinatorHeard:
    """The coordinator spoke to this machine at ``now`` (a heartbeat, a stream message)."""

    now: float


@dataclass(frozen=True)
class CoordinatorRecordSeen:
    """A ``_bjg-coord`` record of the app by ``node`` is in this machine's mDNS view."""

    node: str


@dataclass(frozen=True)
class CoordinatorRecordGone:
    """The ``_bjg-coord`` record of the app by ``node`` left this machine's mDNS view."""

    node: str


@dataclass(frozen=True)
class LinkClosed:
    """The control channel to the coordinator closed (it may be gone: a reason to ask)."""


@dataclass(frozen=True)
class LinkOpened:
    """The control channel to the coordinator is up again."""


@dataclass(frozen=True)
class ServingChanged:
    """This machine's volunteer serves the app (``True``) or something else / nothing."""

    serving: bool


@dataclass(frozen=True)
class Followed:
    """The shell took a stream message (snapshot, append, set change) of ``term`` from
    ``coordinator``; its copy now stands at ``position`` with replica set ``members``.
    The shell decides what it takes (``ReplicaEngine.accepts``) and applies entries itself."""

    term: int
    coordinator: str
    position: Position
    members: Members


@dataclass(frozen=True)
class AppStateAnswer:
    """``peer`` answered the ``AppQuery`` of ``AskCoordinates`` (its ``AppState`` fields)."""

    peer: str
    term: int
    coordinating: bool
    complete: bool


@dataclass(frozen=True)
class VoteAnswer:
    """``peer`` answered the ``VoteRequest`` of ``RequestVotes`` (its ``Vote`` fields)."""

    peer: str
    term: int
    granted: bool
    reason: str = ""


@dataclass(frozen=True)
class PeerSilent:
    """``peer`` gave no answer to the last ask (``AskCoordinates`` or ``RequestVotes``)."""

    peer: str


@dataclass(frozen=True)
class VoteRequested:
    """A candidate asks this replica for its vote; the engine answers with ``SendVote``."""

    now: float
    request: VoteRequest


Event = (
    Tick
    | CoordinatorHeard
    | CoordinatorRecordSeen
    | CoordinatorRecordGone
    | LinkClosed
    | LinkOpened
    | ServingChanged
    | Followed
    | AppStateAnswer
    | VoteAnswer
    | PeerSilent
    | VoteRequested
)


# --- actions: the engine asks the shell ----------------------------------------------------


@dataclass(frozen=True)
class AskCoordinates:
    """Send ``query`` to each of ``peers`` (node ids, best first) and feed back each answer
    (``AppStateAnswer``) or its silence (``PeerSilent``)."""

    peers: tuple[str, ...]
    query: AppQuery


@dataclass(frozen=True)
class PersistVote:
    """Store ``voter`` durably before anything else leaves (a vote must survive a crash);
    ``term`` is the term the role now follows (``TermSeen``), 0 when unchanged."""

    voter: Voter
    term: int = 0


@dataclass(frozen=True)
class RequestVotes:
    """Send ``request`` to ``peers`` and feed back each ``VoteAnswer`` or ``PeerSilent``."""

    term: int
    request: VoteRequest
    peers: tuple[str, ...]


@dataclass(frozen=True)
class SendVote:
    """Answer the candidate of the ``VoteRequested`` event with ``vote``."""

    vote: Vote


@dataclass(frozen=True)
class Claim:
    """Elected: take the app over as coordinator of ``term`` (the engine is done)."""

    term: int


@dataclass(frozen=True)
class Forget:
    """Drop this copy of the app: it ended elsewhere, or it is coordinated elsewhere and
    this machine no longer serves it (the engine is done)."""

    reason: str


@dataclass(frozen=True)
class Note:
    """Something worth a log line (the engine does no I/O, logging included)."""

    text: str
    warning: bool = False


Action = AskCoordinates | PersistVote | RequestVotes | SendVote | Claim | Forget | Note
