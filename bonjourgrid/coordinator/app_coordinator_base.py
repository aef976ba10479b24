"""What the parts of an app's coordinator share: AppCoordinator (app_coordinator.py) is
built from this base and its parts — recruitment.py, worker_events.py, takeover.py and
replica_side.py — each a mixin of methods over the same state.

The attributes are declared here for the type checker only; ``AppCoordinator.__init__``
sets them (their meaning is documented there). The methods one part calls in another are
declared here the same way, under ``TYPE_CHECKING``, so that no stub can shadow the real
method at run time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING

from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import CoordinatorBackend
from bonjourgrid.config import Config
from bonjourgrid.control.messages import HeartbeatAck
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Identity, Peer
from bonjourgrid.coordinator.replication import Replication
from bonjourgrid.coordinator.result_store import ResultStore
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.faulttolerance.quorum import Members, Voter
from bonjourgrid.states.coordinator import CoordinatorRole
from bonjourgrid.states.tasktable import TaskTable


class AppCoordinatorBase:
    """The state of one app's coordinator (see ``AppCoordinator``)."""

    app_id: str
    spec: AppSpec
    bundle: bytes
    bundle_sha: str
    digest: str
    user: str
    signature: str
    signer: str
    ce_key: CEKey
    me: Identity
    config: Config
    role: CoordinatorRole
    table: TaskTable
    seq: int
    journal: Journal
    store: ResultStore
    backend: CoordinatorBackend
    backend_name: str
    links: dict[str, WorkerLink]
    worker_hosts: dict[str, str]
    coordinator: tuple[str, str]
    members: Members
    replica_ranks: tuple[str, ...]
    voter: Voter
    journal_term: int
    replication: Replication
    _offers: Callable[[], list[Offer]]
    _rivals: Callable[[], list[Peer]]
    _last_refusal: str
    _waiting: str
    _unfit_since: dict[str, float]
    _backend_saved: dict[str, str]
    _refused: dict[str, float]
    _recruiting: set[str]
    _running: dict[tuple[str, int], tuple[WorkerLink, int]]
    _unconfirmed: dict[tuple[str, int], str]
    _results_in_flight: set[tuple[str, int]]
    _wake: asyncio.Event

    if TYPE_CHECKING:

        @property
        def term(self) -> int: ...

        def _acting(self) -> bool: ...

        def _record(self, entry: je.Entry, *, outputs: bytes = b"", host: str = "") -> int: ...

        def _replay(self, entry: je.Entry) -> None: ...

        def _save_role(self) -> None: ...

        def _wanted_workers(self, *, fair: bool = True) -> int: ...

        def _save_members(self, members: Members) -> None: ...

        def _spawn(self, coro: Coroutine[object, object, None]) -> None: ...

        async def _release(
            self, link: WorkerLink, reason: str, outcome: str | None = None
        ) -> None: ...

        async def _recruit(self, offer: Offer) -> None: ...

        def _step_down(self, term: int) -> None: ...

        def _reconcile(self, link: WorkerLink, ack: HeartbeatAck) -> None: ...

        async def _on_message(self, link: WorkerLink, msg: object) -> None: ...

        async def _on_lost(self, link: WorkerLink, reason: str) -> None: ...
