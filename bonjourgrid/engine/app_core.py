"""What the parts of an ``AppEngine`` may use of it: a narrow interface (memberlist's habit).

The commit path (commit.py), the takeover (takeover.py) and the demand for machines
(demand.py) each own their own state; they read the app's table, ledger and replica set
through this, change the table only by ``record`` (journal an entry) and reach the shell
only by ``emit`` (an action) — never by writing the engine's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.engine.app_events import Action
from bonjourgrid.engine.ledger import Ledger
from bonjourgrid.engine.placement import Placement
from bonjourgrid.engine.replica_set import ReplicaSet
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.tasktable import TaskTable


@dataclass(frozen=True)
class AppTiming:
    """The engine's timings (``bonjourgrid.config.Config`` has them by the same names)."""

    recruit_retry: float = 1.0
    heartbeat_interval: float = 0.5
    rehome_grace: float = 4.0
    connect_timeout: float = 2.0
    recruit_timeout: float = 30.0
    refusal_backoff: float = 2.0
    """Seconds before asking again a volunteer that refused us."""


class AppCore(Protocol):
    app: str
    me: str
    spec: AppSpec
    table: TaskTable
    ledger: Ledger
    placement: Placement
    replicas: ReplicaSet
    timing: AppTiming
    worker_hosts: dict[str, str]
    """Each worker's host name, as the journal and the links named it."""
    seq: int
    """Entries journaled so far."""

    @property
    def term(self) -> int: ...

    @property
    def now(self) -> float:
        """The latest time an event brought (the engine reads no clock)."""
        ...

    def acting(self) -> bool:
        """Coordinating and not stopped: the only state in which anything is committed."""
        ...

    def record(
        self, entry: je.Entry, *, host: str = "", outputs: bytes = b"", promote: bool = False
    ) -> int:
        """Apply ``entry``; journal it (``Append``) if it changed the table. Its number, or 0."""
        ...

    def release(self, node: str, reason: str, outcome: str = "") -> None:
        """Forget worker ``node`` and let it go (``Release``)."""
        ...

    def note(self, text: str, warning: bool = False) -> None: ...

    def emit(self, action: Action) -> None: ...
