"""What the parts of the host's daemon share: NodeDaemon (node.py) is built from this base and
its parts — advertising.py, local_requests.py, journal_resume.py and replica_handlers.py —
each a mixin of methods over the same state.

The attributes are declared here for the type checker only; ``NodeDaemon.__init__`` sets
them (their meaning is documented there). The methods one part calls in another are declared
here the same way, under ``TYPE_CHECKING``, so that no stub can shadow the real method at
run time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.config import Config
from bonjourgrid.coordinator.app_coordinator import AppCoordinator
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Identity, Peer
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.volunteer_agent import VolunteerAgent
from bonjourgrid.discovery import Discovery
from bonjourgrid.faulttolerance.journal import AppRow, Journal
from bonjourgrid.gridkey import GridKey
from bonjourgrid.paths import Paths
from bonjourgrid.states.coordinator import CoordinatorRole


class NodeDaemonBase:
    """The state of the host's daemon (see ``NodeDaemon``)."""

    paths: Paths
    config: Config
    key: GridKey
    host: HostInfo
    me: Identity
    volunteer: bool
    attributes: tuple[tuple[str, str], ...]
    static_peers: list[tuple[str, int]]
    _static_offers: list[Offer]
    discovery: Discovery | None
    journal: Journal | None
    agent: VolunteerAgent
    apps: dict[str, AppCoordinator]
    started_at: float
    _kick: asyncio.Event
    _loaded: asyncio.Event
    _dormant: dict[str, AppRow]
    _published_claims: dict[str, tuple[int, int, int]]

    if TYPE_CHECKING:

        async def _settle(self) -> None: ...

        def _forget_app(self, app: AppCoordinator) -> None: ...

        def _start_app(self, app: AppCoordinator) -> None: ...

        def _app_object(
            self,
            *,
            app_id: str,
            spec: AppSpec,
            bundle: bytes,
            digest: str,
            user: str,
            role: CoordinatorRole | None,
            entries: list[str] | None = None,
            coordinator: tuple[str, str] | None = None,
            replicas: tuple[str, ...] = (),
            signature: str = "",
            signer: str = "",
            ce_key: CEKey | None = None,
        ) -> AppCoordinator: ...

        def submit(
            self,
            spec: AppSpec,
            bundle: bytes,
            *,
            digest: str,
            user: str | None = None,
            signature: str = "",
            signer: str = "",
            app_id: str = "",
            ce_key: CEKey | None = None,
        ) -> AppCoordinator: ...

        def _rivals(self, app_id: str) -> list[Peer]: ...

        async def _resume(self, row: AppRow) -> AppCoordinator | None: ...
