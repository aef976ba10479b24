"""Journal entries: every change of an app's task table, as data that can be replayed.

The coordinator never changes its ``TaskTable`` directly: it makes an entry, makes the entry
durable (its SQLite journal, then its replicas when the entry is a result), and applies it.
A restarted coordinator, a replica, or the simulator rebuilds the very same table by applying
the same entries in the same order (``replay``). Entries are JSON objects so the journal can
be read by hand and sent over the control channel unchanged.

Pure: no I/O, no clock. Entries carry no clock reading either: an attempt's duration is the
``seconds`` its worker measured (``TaskResult.seconds``). ``Started.at`` and ``Finished.at``
stay in the format, always ``NO_CLOCK`` (0.0), so that an older daemon still reads a new
journal; an older journal's values there (``time.monotonic()`` of whichever machine wrote the
entry, meaningless on any other) are dropped when it is decoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from bonjourgrid.states.tasktable import IllegalTaskTransition, TaskTable

NO_CLOCK = 0.0
"""What ``Started.at`` and ``Finished.at`` hold: no clock reading (see above)."""


@dataclass(frozen=True)
class Started:
    task: str
    attempt: int
    worker: str
    host: str
    at: float


@dataclass(frozen=True)
class Finished:
    """An attempt's exit status (any code): the task is done, retried or failed."""

    task: str
    attempt: int
    exit_code: int
    seconds: float | None
    at: float
    term: int = 0
    """The coordinator's term that committed it (each result is committed by one term)."""
    worker: str = ""
    """Who ran it, when the attempt started with no worker (the backend's middleware placed
    it: HTCondor, BOINC); "" when ``Started`` named the worker."""
    host: str = ""


@dataclass(frozen=True)
class Abandoned:
    """An attempt given up: timed out / bad outputs (a failure) or its worker lost (not)."""

    task: str
    attempt: int
    reason: str
    counts_as_failure: bool
    seconds: float | None = None


@dataclass(frozen=True)
class GaveUp:
    """A READY task that no volunteer can run."""

    task: str
    reason: str


@dataclass(frozen=True)
class BackendState:
    """What the app's backend must find again after a takeover (e.g. BOINC's per-app
    code-signing key): journaled and replicated like the table's changes; the table ignores it."""

    backend: str
    data: dict[str, str]


@dataclass(frozen=True)
class Cancelled:
    """Every unfinished task fails with ``reason`` (user cancel, grid failure)."""

    reason: str


Entry = Started | Finished | Abandoned | GaveUp | Cancelled | BackendState

_KINDS: dict[str, type[Entry]] = {
    "start": Started,
    "finish": Finished,
    "abandon": Abandoned,
    "give_up": GaveUp,
    "cancel": Cancelled,
    "backend_state": BackendState,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


class BadEntry(ValueError):
    """An entry that cannot be decoded or does not apply to the table."""


def apply(table: TaskTable, entry: Entry) -> bool:
    """Apply one entry; True if it changed the table (False: a harmless duplicate) or is
    worth keeping without touching it (``BackendState``)."""
    if isinstance(entry, BackendState):
        return True
    if isinstance(entry, Started):
        try:
            next_attempt = table.record(entry.task).attempts + 1
            if entry.attempt != next_attempt:
                raise BadEntry(
                    f"{entry.task}: journal says attempt {entry.attempt}, table {next_attempt}"
                )
            table.start(entry.task, entry.worker, entry.at)
        except (IllegalTaskTransition, KeyError) as e:
            raise BadEntry(str(e)) from None
        return True
    if isinstance(entry, Finished):
        return table.finish(
            entry.task,
            entry.attempt,
            exit_code=entry.exit_code,
            now=entry.at,
            seconds=entry.seconds,
            worker=entry.worker,
        )
    if isinstance(entry, Abandoned):
        return table.abandon(
            entry.task,
            entry.attempt,
            reason=entry.reason,
            counts_as_failure=entry.counts_as_failure,
            seconds=entry.seconds,
        )
    if isinstance(entry, GaveUp):
        try:
            table.give_up(entry.task, entry.reason)
        except IllegalTaskTransition:
            return False
        return True
    table.cancel(entry.reason)
    return True


def replay(table: TaskTable, entries: Iterable[Entry]) -> TaskTable:
    """Apply ``entries`` in order to a fresh ``table``; the same table as when they were made."""
    for e in entries:
        apply(table, e)
    return table


def encode(entry: Entry) -> str:
    return json.dumps({"k": _NAMES[type(entry)], **asdict(entry)}, separators=(",", ":"))


def decode(text: str) -> Entry:
    try:
        raw: Any = json.loads(text)
        cls = _KINDS[raw.pop("k")]
        if cls in (Started, Finished):
            raw["at"] = NO_CLOCK  # an old journal's clock reading (or none): dropped
        return cls(**raw)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadEntry(f"undecodable journal entry: {e}") from None
