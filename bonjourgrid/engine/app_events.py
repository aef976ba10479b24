"""What goes into an ``AppEngine`` (events) and what comes out (actions).

Every event and action is a frozen dataclass; times are the shell's clock readings passed in
(``now``: the daemon's ``time.monotonic()``, the simulation's virtual clock), never read by
the engine. What a worker sends is passed as the real ``bonjourgrid.control.messages``
object (``FromWorker.message``), so the daemon and the simulation feed exactly the same
things. Worker and replica identities are node ids (the link's proven peer).

The shell's side, in short: it owns the links, the journal file, the result store, the
backend and the timers. It feeds what happened, carries out the actions in order, and calls
``handle(Tick(now))`` at least every ``wake_at`` (or every heartbeat).
"""

from __future__ import annotations

from dataclasses import dataclass

from bonjourgrid.control.messages import Fenced, GiveBack, HeartbeatAck, JournalAck, TaskResult
from bonjourgrid.engine.fairshare import Claim
from bonjourgrid.engine.matchmaking import Offer
from bonjourgrid.faulttolerance.entries import Entry
from bonjourgrid.faulttolerance.quorum import Members

# --- events: the shell tells the engine ---------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Time passed: place, recruit, release, explain waiting, give up, end — what is due."""

    now: float


@dataclass(frozen=True)
class Seen:
    """The shell's current mDNS view: every volunteer's offer, and the rival coordinators'
    fair-share claims (their ``_bjg-coord`` records' TXT), this app's own left out."""

    offers: tuple[Offer, ...]
    claims: tuple[Claim, ...] = ()


@dataclass(frozen=True)
class Reserved:
    """``worker`` accepted the ``Recruit`` (``ReserveReply.accepted``): a link is open, with
    ``slots`` CPU slots. The engine answers ``Prepare`` (the backend stages the app there)."""

    now: float
    worker: str
    host: str
    slots: int
    offer: Offer | None = None


@dataclass(frozen=True)
class ReserveFailed:
    """The ``Recruit`` of ``worker`` failed (unreachable, refused: ``reason``). ``term`` > 0:
    the volunteer answered ``Fenced(term)`` — a higher term coordinates the app."""

    now: float
    worker: str
    reason: str
    term: int = 0


@dataclass(frozen=True)
class Prepared:
    """The backend prepared ``worker`` (``error`` "": it is ready for tasks)."""

    now: float
    worker: str
    error: str = ""


@dataclass(frozen=True)
class FromWorker:
    """``worker`` (the link's proven peer node) sent ``message`` over its link."""

    now: float
    worker: str
    message: TaskResult | GiveBack | HeartbeatAck | JournalAck | Fenced


@dataclass(frozen=True)
class BackendResult:
    """A backend whose middleware places tasks (HTCondor, BOINC) delivers a finished attempt,
    run on ``worker`` ("" if unknown). Committed by the same path as a worker's result; the
    engine answers ``Ack(via_backend=True)`` once durable (until then the backend keeps it)."""

    now: float
    result: TaskResult
    worker: str = ""


@dataclass(frozen=True)
class OutputsStaged:
    """The shell carried out ``StageOutputs``: the files are in place (``error`` "") or
    could not be read (``error`` says why)."""

    now: float
    task: str
    attempt: int
    error: str = ""


@dataclass(frozen=True)
class LaunchFailed:
    """``Launch`` of ``task``/``attempt`` failed in the shell (``error``)."""

    now: float
    task: str
    attempt: int
    error: str


@dataclass(frozen=True)
class LinkLost:
    """The link to ``worker`` closed or went silent (the shell's heartbeat watch)."""

    now: float
    worker: str
    reason: str


@dataclass(frozen=True)
class MemberState:
    """A replica-set member this coordinator does not reach answered the ``Probe``:
    ``term`` and ``role`` of its copy (``role`` "": it holds nothing of the app)."""

    now: float
    node: str
    term: int
    role: str


@dataclass(frozen=True)
class TermSeen:
    """A higher ``term`` for the app was seen (a rival's ``AppState``, a ``Stale``, …)."""

    now: float
    term: int


@dataclass(frozen=True)
class CancelRequested:
    now: float
    reason: str = "cancelled by the user"


@dataclass(frozen=True)
class BackendSaved:
    """The backend started and has ``data`` it must find again after a takeover
    (``CoordinatorBackend.saved_state``): journaled as a ``BackendState`` entry."""

    now: float
    backend: str
    data: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Failed:
    """The shell cannot go on coordinating (``reason``: e.g. its backend failed): the app
    ends as failed, with the reason journaled."""

    now: float
    reason: str


@dataclass(frozen=True)
class Stop:
    """The daemon stops without ending the app: act no more, keep the journal as it is."""

    now: float


Event = (
    Tick
    | Seen
    | Reserved
    | ReserveFailed
    | Prepared
    | FromWorker
    | BackendResult
    | OutputsStaged
    | LaunchFailed
    | LinkLost
    | MemberState
    | TermSeen
    | CancelRequested
    | BackendSaved
    | Failed
    | Stop
)


# --- actions: the engine asks the shell ----------------------------------------------------


@dataclass(frozen=True)
class Recruit:
    """Dial ``offer`` and send it ``Reserve`` with ``term`` (a re-home when ``rehome``);
    feed back ``Reserved`` or ``ReserveFailed``."""

    offer: Offer
    term: int
    rehome: bool = False


@dataclass(frozen=True)
class Prepare:
    """Let the backend prepare ``worker`` (stage the app); feed back ``Prepared``."""

    worker: str


@dataclass(frozen=True)
class Launch:
    """Start attempt ``attempt`` of ``task`` on ``worker`` (``""``: hand it to the
    middleware, which places it); on failure feed back ``LaunchFailed``."""

    task: str
    attempt: int
    worker: str


@dataclass(frozen=True)
class StageOutputs:
    """Unpack ``result.outputs`` into the result store (not yet promoted); feed back
    ``OutputsStaged``."""

    result: TaskResult


@dataclass(frozen=True)
class Append:
    """Journal ``entry`` as number ``seq`` (``store.promote`` its staged outputs first when
    ``promote``), then feed it to every replica feed with ``host`` and ``outputs``."""

    seq: int
    entry: Entry
    host: str = ""
    outputs: bytes = b""
    promote: bool = False


@dataclass(frozen=True)
class Discard:
    """Drop the staged outputs of ``task``/``attempt`` (settled meanwhile, or unreadable)."""

    task: str
    attempt: int


@dataclass(frozen=True)
class Ack:
    """The result of ``task``/``attempt`` is committed on ``W`` durable copies: send
    ``ResultAck(term)`` to ``worker`` (``via_backend``: tell the backend it may forget it)."""

    worker: str
    task: str
    attempt: int
    term: int
    via_backend: bool = False


@dataclass(frozen=True)
class Release:
    """Send ``AppEnded(outcome)`` (if ``outcome``) then ``Release(reason)`` to ``worker`` and
    close its link (the engine has forgotten it already)."""

    worker: str
    reason: str
    outcome: str = ""


@dataclass(frozen=True)
class CloseLink:
    """Close the link to ``worker`` with no goodbye (it spoke for an attempt not placed on
    it: its loss follows; or this coordinator stepped down / stopped)."""

    worker: str
    reason: str


@dataclass(frozen=True)
class NotCommitted:
    """A ``BackendResult`` was not committed (this node no longer coordinates the app): the
    backend keeps it and delivers it again (to whoever coordinates next)."""

    task: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Feed:
    """Start the journal stream to replica ``node`` (snapshot, then the set)."""

    node: str


@dataclass(frozen=True)
class Unfeed:
    node: str


@dataclass(frozen=True)
class Resync:
    """Replica ``node`` saw a gap: send it a snapshot and the set again."""

    node: str


@dataclass(frozen=True)
class MembersChanged:
    """The replica set is now ``members``: persist it and send it (``Replicas``) to every
    feed, with ``term``."""

    members: Members
    term: int


@dataclass(frozen=True)
class Probe:
    """Ask member ``node`` (not linked) for its ``AppState``; feed back ``MemberState``."""

    node: str


@dataclass(frozen=True)
class SaveRole:
    """Persist the role (``role``, ``term``, ``reason``); ``ended``: the app ended here."""

    role: str
    term: int
    reason: str
    ended: bool


@dataclass(frozen=True)
class Ended:
    """The engine is done (``outcome``: finished / cancelled / failed / stepped-down, or ""
    when stopped): stop the backend; for an app that ended here, every replica was told
    (``AppEnded``) first by the ``Release``s before this."""

    outcome: str


@dataclass(frozen=True)
class Note:
    """Something worth a log line (the engine does no I/O, logging included)."""

    text: str
    warning: bool = False


Action = (
    Recruit
    | Prepare
    | Launch
    | StageOutputs
    | Append
    | Discard
    | Ack
    | Release
    | CloseLink
    | NotCommitted
    | Feed
    | Unfeed
    | Resync
    | MembersChanged
    | Probe
    | SaveRole
    | Ended
    | Note
)
