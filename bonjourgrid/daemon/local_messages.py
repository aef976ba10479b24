"""Messages between the CLI and the host's daemon over its local socket.

The socket is the user's (mode 0600 in the state dir) and the daemon checks the peer's uid,
so these messages carry no MAC. ONLY APPEND to ``LocalKind``: the numbers are the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from bonjourgrid.control.codec import Registry
from bonjourgrid.control.message_checks import Checked as _Checked

LOCAL = Registry("local")


class LocalKind(IntEnum):
    # ONLY APPEND: the numbers are the protocol.
    SUBMIT = 1
    SUBMITTED = 2
    WATCH = 3
    PROGRESS = 4
    FETCH_RESULTS = 5
    RESULTS = 6
    STATUS = 7
    STATUS_REPLY = 8
    APPS = 9
    APPS_REPLY = 10
    CANCEL = 11
    OK = 12
    FAILURE = 13
    DRY_RUN = 14
    DRY_RUN_REPLY = 15
    PAUSE = 16
    PAUSE_REPLY = 17


@LOCAL.register(LocalKind.SUBMIT)
@dataclass(frozen=True)
class Submit(_Checked):
    spec: dict[str, object]
    """The resolved app (``AppSpec.to_json()``), with CLI overrides applied."""
    bundle: bytes
    digest: str
    """Identity of this submission (app.json path + content): a resubmission re-attaches."""
    fresh: bool
    user: str
    app: str
    """The app id ``bjgrid submit`` chose (and signed): the daemon uses it, or refuses it
    when it is in use already."""
    signature: str = ""
    """``AppSignature.encode()`` by the user's signing key (app/signing.py); "" unsigned."""
    signer: str = ""
    """The user name in the signature ("" unsigned)."""
    ce_secret: str = ""
    """The app's private CE key (hex, app/ce_key.py) whose public half the signature names;
    "" lets the daemon make one (unsigned apps only)."""


@LOCAL.register(LocalKind.SUBMITTED)
@dataclass(frozen=True)
class Submitted(_Checked):
    app: str
    resumed: bool


@LOCAL.register(LocalKind.WATCH)
@dataclass(frozen=True)
class Watch(_Checked):
    app: str


@LOCAL.register(LocalKind.PROGRESS)
@dataclass(frozen=True)
class Progress(_Checked):
    app: str
    name: str
    role: str
    counts: dict[str, object]
    workers: int
    ended: bool
    outcome: str
    reason: str
    waiting: str = ""
    """While tasks wait for a volunteer nobody can match: which requirement nobody meets,
    e.g. ``no volunteer has memory_mb>=64000 (6 seen)``; "" otherwise."""


@LOCAL.register(LocalKind.FETCH_RESULTS)
@dataclass(frozen=True)
class FetchResults(_Checked):
    app: str
    proof: str = ""
    """``RequestProof.encode()`` by the user's key (action "results", this daemon's node),
    passed on to the holder; "" when the user has no key (unsigned apps only)."""


@LOCAL.register(LocalKind.RESULTS)
@dataclass(frozen=True)
class Results(_Checked):
    app: str
    name: str
    complete: bool
    outcome: str
    results: dict[str, object]
    outputs: bytes
    """A tar of ``<task-id>/...`` for every task that has outputs so far."""
    manifest: str = ""
    """The holder's result manifest (coordinator/manifest.py), checked by the CLI."""
    manifest_signature: str = ""
    holder: str = ""
    """The node id of the daemon whose answer this is."""


@LOCAL.register(LocalKind.STATUS)
@dataclass(frozen=True)
class StatusRequest(_Checked):
    timeout: float


@LOCAL.register(LocalKind.STATUS_REPLY)
@dataclass(frozen=True)
class StatusReply(_Checked):
    machines: list[object]


@LOCAL.register(LocalKind.APPS)
@dataclass(frozen=True)
class AppsRequest(_Checked):
    timeout: float


@LOCAL.register(LocalKind.APPS_REPLY)
@dataclass(frozen=True)
class AppsReply(_Checked):
    apps: list[object]


@LOCAL.register(LocalKind.CANCEL)
@dataclass(frozen=True)
class CancelApp(_Checked):
    app: str
    proof: str = ""
    """As in ``FetchResults``, with action "cancel"."""


@LOCAL.register(LocalKind.OK)
@dataclass(frozen=True)
class Ok(_Checked):
    message: str


@LOCAL.register(LocalKind.FAILURE)
@dataclass(frozen=True)
class Failure(_Checked):
    code: int
    """The exit status the CLI should use (DESIGN.md contract)."""
    message: str


@LOCAL.register(LocalKind.DRY_RUN)
@dataclass(frozen=True)
class DryRun(_Checked):
    """``submit --dry-run``: match the app against the volunteers seen; recruit nothing."""

    spec: dict[str, object]
    """As in ``Submit`` (``AppSpec.to_json()`` with the overrides applied)."""
    timeout: float


@LOCAL.register(LocalKind.DRY_RUN_REPLY)
@dataclass(frozen=True)
class DryRunReply(_Checked):
    seen: int
    """Volunteers of this grid seen (idle, serving an app, or busy with their owner)."""
    tasks: list[object]
    """One row per task, in the app's order: ``{id, fit_now, could, reason}``
    (matchmaking.fit_rows)."""


@LOCAL.register(LocalKind.PAUSE)
@dataclass(frozen=True)
class Pause(_Checked):
    """``bjgrid pause`` (True) / ``bjgrid resume`` (False): the owner's manual hold."""

    paused: bool


@LOCAL.register(LocalKind.PAUSE_REPLY)
@dataclass(frozen=True)
class PauseReply(_Checked):
    paused: bool
    policy: str
    """The owner policy's state once a sample was judged with the hold: ``paused``, ``busy``
    (lifted, but the owner is at the machine) or ``ok`` (offered again)."""
    tasks: int
    """Tasks on this machine now (stopped while paused)."""
    resume_after: float
    """Quiet seconds the owner policy wants before it offers the machine again."""
