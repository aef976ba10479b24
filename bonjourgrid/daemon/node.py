"""The one bjgrid daemon of a host: it owns zeroconf, the control port and the local socket.

``bjgrid join`` runs it as a volunteer; any other command that finds no daemon runs a private
one (not volunteering) for its own lifetime. Either way it serves the CLI over a Unix socket
in the state dir, coordinates the apps submitted on this host, and — when volunteering —
answers coordinators on its authenticated control port.

This file holds the life cycle, housekeeping, the owner policy, the control channel and the
apps held here (``apps``: coordinated or kept as a replica). Its parts are objects of their
own, each given the daemon (they read its state; they change the set of apps only through
``keep``, ``start_app`` and ``forget_app``): ``advertising`` (advertising.py: the mDNS
records out, offers and claims in), ``local`` (local_requests.py: the CLI), ``app_requests``
(app_requests.py: other daemons asking about the apps held here), ``resumer``
(journal_resume.py: resuming apps after a restart), ``replicas`` (replica_handlers.py: the
journal copies this machine keeps as a replica), ``election`` (election.py) and ``agent``
(volunteer_agent.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends import leftovers
from bonjourgrid.config import Config
from bonjourgrid.control.admission import raise_open_files_limit
from bonjourgrid.control.channel import Channel, serve
from bonjourgrid.control.local_channel import serve_local
from bonjourgrid.control.messages import (
    AppQuery,
    CancelApp,
    Error,
    FetchApp,
    Ping,
    Pong,
    Reserve,
    VoteRequest,
)
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.coordinator.peers import Identity
from bonjourgrid.daemon import local_messages as lm
from bonjourgrid.daemon.advertising import Advertising
from bonjourgrid.daemon.app_requests import AppRequests
from bonjourgrid.daemon.election import Election
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.journal_resume import JournalResume
from bonjourgrid.daemon.local_requests import LocalRequests
from bonjourgrid.daemon.lock import DaemonLock
from bonjourgrid.daemon.replica_handlers import ReplicaHandlers
from bonjourgrid.daemon.volunteer_agent import VolunteerAgent
from bonjourgrid.discovery import Discovery
from bonjourgrid.discovery.txt import clean_attributes
from bonjourgrid.faulttolerance.journal import Journal
from bonjourgrid.gridkey import GridKey
from bonjourgrid.paths import Paths
from bonjourgrid.policy import Action, PolicyDriver, PolicyState, pause
from bonjourgrid.policy.volunteer import VolunteerSettings
from bonjourgrid.safepath import under
from bonjourgrid.states.coordinator import CoordinatorRole, Role

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator

log = logging.getLogger(__name__)

_TICK = 0.25
"""Housekeeping period while a lease runs (well below the shortest lease)."""
_IDLE_TICK = 30.0
"""Housekeeping period of an idle daemon (no lease, no live app): an idle LAN stays quiet,
laptops sleep. Nothing idle is due sooner (ended apps are kept for hours), and every state or
mDNS change wakes the loop at once (``_kick``)."""


class NodeDaemon:
    """The host's daemon; the module docstring lists its parts."""

    def __init__(
        self,
        *,
        paths: Paths,
        config: Config,
        key: GridKey,
        host: HostInfo,
        volunteer: bool,
        mdns: bool = True,
        interfaces: Sequence[str] = (),
        listen: str = "::",
        port: int = 0,
        static_peers: Sequence[tuple[str, int]] = (),
        settings: VolunteerSettings | None = None,
    ) -> None:
        self.paths = paths
        self.settings = settings or VolunteerSettings()
        """Owner policy, sandbox and trust (``volunteer.toml`` and join's options)."""
        self.policy: PolicyDriver | None = None
        self.attributes, dropped = clean_attributes(self.settings.attributes)
        """Custom attributes advertised for matchmaking (``[attributes]`` in volunteer.toml)."""
        for why in dropped:
            log.warning("attribute left out of the TXT record: %s", why)
        self.config = config
        self.key = key
        node_key = host.node_key
        if node_key is None:  # a host described by hand (tests): a throwaway identity
            node_key = NodeKey.generate()
            host = dataclasses.replace(host, node_id=node_key.node_id, node_key=node_key)
        elif node_key.node_id != host.node_id:
            raise ValueError(f"node id {host.node_id} is not the fingerprint of its node key")
        self.node_key = node_key
        """This node's key: its fingerprint is ``host.node_id``, proven in every handshake."""
        self.host = host
        self.volunteer = volunteer
        self.mdns = mdns
        self.interfaces = tuple(interfaces)
        self.listen = listen
        self.port = port
        self.static_peers = list(static_peers)
        self.discovery: Discovery | None = None
        self.apps: dict[str, AppCoordinator] = {}
        self._app_tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = DaemonLock(paths.daemon_lock)
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = 0.0
        self._kick = asyncio.Event()
        self.advertising = Advertising(self)
        self.app_requests = AppRequests(self)
        self.local = LocalRequests(self)
        self.resumer = JournalResume(self)
        self.replicas = ReplicaHandlers(self)
        self.me = Identity(host.node_id, host.hostname, key, node_key)
        self.journal: Journal | None = None
        self.loaded = asyncio.Event()
        """Set once the journal's apps are back (a submit waits for it, to re-attach)."""
        self.agent = VolunteerAgent(
            host=host,
            config=config,
            work_dir=paths.work_dir,
            reservation_log=paths.log_dir / "reservations.jsonl",
            on_state_change=self.advertising.advertise,
            offering=volunteer,
            on_replica=self.replicas.on_replica,
            execution_log=paths.log_dir / "executions.jsonl",
            on_rehomed=self.replicas.on_rehomed,
            trusted=self.settings.trusted,
            sandbox=self.settings.sandbox,
        )
        self.election = Election(
            me=self.me,
            config=config,
            agent=self.agent,
            discovery=lambda: self.discovery,
            promote=self.start_app,
            forget=self.forget_app,
        )

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the host's daemon lock, then open the control port, mDNS and the local socket."""
        self.paths.ensure()
        raise_open_files_limit()  # many channels and task files: not the default 1024
        self._lock.acquire()
        try:
            for top in (self.paths.apps_dir, self.paths.work_dir):
                leftovers.reap(top)  # HTCondor/BOINC processes a crash of ours left running
            self.journal = Journal(self.paths.state_dir / "journal.sqlite")
            server = await serve(
                self.listen,
                self.port,
                key=self.key,
                node=self.node_key,
                on_channel=self._on_control,
            )
            self._servers.append(server)
            self.port = server.sockets[0].getsockname()[1]
            if self.mdns:
                self.discovery = Discovery(
                    grid_id=self.key.grid_id,
                    node_id=self.host.node_id,
                    hostname=self.host.hostname,
                    port=self.port,
                    interfaces=self.interfaces,
                    interface_poll=self.config.interface_poll,
                )
                await self.discovery.start()
                self.discovery.add_listener(self.kick)
                await self.advertising.advertise()
            local = await serve_local(
                str(self.paths.daemon_socket), registry=lm.LOCAL, on_channel=self.local.on_local
            )
            self._servers.append(local)
        except BaseException:
            await self.stop()
            raise
        self.started_at = time.monotonic()
        if self.volunteer:
            self._start_policy()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._tasks.append(asyncio.create_task(self.resumer.load_journal(), name="resume apps"))
        log.info(
            "daemon %s (%s) up on port %d, grid %s%s",
            self.host.node_id,
            self.host.hostname,
            self.port,
            self.key.grid_id,
            ", volunteering" if self.volunteer else "",
        )

    async def stop(self) -> None:
        """Stop acting for this host's apps without ending them (their replicas take over
        at our goodbye, or this daemon resumes them from its journal), say goodbyes, let go."""
        for app in list(self.apps.values()):
            app.abandon()
        for t in self._app_tasks.values():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(t), 5.0)
        for t in self._tasks:
            t.cancel()
        await self.agent.close()
        if self.discovery is not None:
            await self.discovery.close()
        for s in self._servers:
            s.close()
        self._servers.clear()
        with contextlib.suppress(FileNotFoundError):
            self.paths.daemon_socket.unlink()
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        self._lock.release()

    async def _housekeeping(self) -> None:
        while True:
            busy = (
                self.agent.state != "idle"
                or bool(self.static_peers)
                or any(not a.role.ended for a in self.apps.values())
            )
            self._kick.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), _TICK if busy else _IDLE_TICK)
            if self.policy is not None:
                self.policy.wake()  # reserved or released: sampling fast or slow from now
            try:
                for app in self.apps.values():
                    app.wake()  # the mDNS view may have changed: recruit now, not next tick
                await self.agent.tick()
                self.election.check([a for a in self.apps.values() if a.role.role is Role.STANDBY])
                await self._forget_old_apps()
                await self.advertising.publish_claims()
                if self.static_peers:
                    await self.advertising.refresh_static()
            except Exception:
                log.exception("housekeeping failed")

    async def _forget_old_apps(self) -> None:
        """Drop apps that ended more than ``results_keep`` ago, with their files on disk."""
        now = time.monotonic()
        for app in list(self.apps.values()):
            if app.ended_at is not None and now - app.ended_at > self.config.results_keep:
                self.forget_app(app)

    def forget_app(self, app: AppCoordinator) -> None:
        """Drop an app from memory, the journal and the disk."""
        if self.apps.get(app.app_id) is app:
            del self.apps[app.app_id]
            self._app_tasks.pop(app.app_id, None)
        if self.journal is not None:
            self.journal.forget(app.app_id)
        shutil.rmtree(app.store.root, True)

    # --- the owner policy (docs/owner-policy.md) ---------------------------------------------

    def _start_policy(self) -> None:
        """Watch the owner: suspend tasks when they come back, resume or give back later."""
        s = self.settings
        paused = pause.is_paused(self.paths.state_dir)  # bjgrid pause holds across restarts
        if paused:
            log.warning("paused by its owner (bjgrid resume lifts it): no tasks are taken")
        self.policy = PolicyDriver(
            s.activity_source(os.getpid()),
            s.policy,
            on_action=self._on_policy_action,
            on_state=self._on_policy_state,
            has_tasks=self.agent.has_tasks,
            engaged=lambda: self.agent.state != "idle",  # tasks may come: sample fast
            paused=paused,
        )
        self._tasks.append(asyncio.create_task(self.policy.run(), name="owner policy"))

    async def _on_policy_action(self, action: Action) -> None:
        if action is Action.SUSPEND:
            self.agent.suspend()
        elif action is Action.RESUME:
            self.agent.resume()
        elif action is Action.GIVE_BACK:
            limit = self.settings.policy.max_suspension
            paused = self.policy is not None and self.policy.paused
            who = "paused by its owner" if paused else "the owner needed the machine"
            await self.agent.give_back(f"{who} for over {limit:g} s")

    async def _on_policy_state(self, state: PolicyState) -> None:
        self.agent.owner_busy = state is not PolicyState.OK  # busy or paused
        await self.advertising.advertise()

    # --- control channel (other daemons) ----------------------------------------------------

    def pong(self) -> Pong:
        return Pong(
            node=self.host.node_id,
            host=self.host.hostname,
            state=self.agent.state if self.volunteer else "private",
            app=self.agent.app,
            coordinator=self.agent.coordinator,
            cpus=self.host.cpus,
            slots=self.host.slots,
            free_slots=self.agent.free_slots(),
            coordinates=tuple(a for a, c in self.apps.items() if not c.role.ended),
            backends=self.host.backends,
        )

    async def _on_control(self, ch: Channel) -> None:
        first = await ch.recv()
        if isinstance(first, Ping):
            await ch.send(self.pong())
        elif isinstance(first, Reserve):
            await self.agent.serve(ch, first)
        elif isinstance(first, VoteRequest):
            await ch.send(self.election.vote(first, self.apps.get(first.app)))
        elif isinstance(first, AppQuery):
            await self.app_requests.answer_query(ch, first)
        elif isinstance(first, FetchApp):
            await self.app_requests.answer_fetch(ch, first)
        elif isinstance(first, CancelApp):
            await self.app_requests.answer_cancel(ch, first)
        else:
            await ch.send(Error(f"unexpected {type(first).__name__} to start a conversation"))

    # --- the apps coordinated here ------------------------------------------------------------

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
    ) -> AppCoordinator:
        """Coordinate a new app. ``app_id`` and ``ce_key`` are what ``bjgrid submit`` chose
        (and signed, for a signed app); an unsigned app may leave them to the daemon."""
        assert self.journal is not None, "the daemon is not started"
        app_id = app_id or secrets.token_hex(4)
        if app_id in self.apps or self.journal.app(app_id) is not None:
            raise ValueError(f"app id {app_id} is in use already on this machine")
        ce_key = ce_key or CEKey.generate()
        user = user or getpass.getuser()
        self.journal.add_app(
            app=app_id,
            spec=spec.to_json(),
            bundle=bundle,
            digest=digest,
            user=user,
            term=1,
            role=Role.RECRUITING.value,
            coordinator=self.host.node_id,
            coordinator_host=self.host.hostname,
            signature=signature,
            signer=signer,
            ce_key=ce_key.hex(),
        )
        app = self.app_object(
            app_id=app_id,
            spec=spec,
            bundle=bundle,
            digest=digest,
            user=user,
            role=None,
            signature=signature,
            signer=signer,
            ce_key=ce_key,
        )
        self.start_app(app)
        return app

    def app_object(
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
    ) -> AppCoordinator:
        # Loaded with the first app: an idle volunteer never needs the coordinator's code.
        from bonjourgrid.coordinator.app_coordinator import AppCoordinator

        assert self.journal is not None
        return AppCoordinator(
            app_id=app_id,
            spec=spec,
            bundle=bundle,
            digest=digest,
            user=user,
            me=self.me,
            config=self.config,
            offers=self.advertising.offers,
            store_root=under(self.paths.apps_dir, app_id),
            journal=self.journal,
            role=role,
            entries=entries or (),
            coordinator=coordinator,
            replicas=replicas,
            rivals=lambda: self.advertising.rivals(app_id),
            claims=self.advertising.claims,
            address=self._lan_address,
            signature=signature,
            signer=signer,
            ce_key=ce_key,
        )

    def _lan_address(self) -> str:
        """The address this machine's workers reach it at (a CE's head listens there)."""
        bound = self.discovery.addresses if self.discovery is not None else []
        return bound[0] if bound else "127.0.0.1"

    def kick(self) -> None:
        """Something changed (mDNS, a state, an app): housekeeping runs now."""
        self._kick.set()

    def keep(self, app: AppCoordinator) -> None:
        """Hold ``app`` here without coordinating it (a replica's copy, an ended app)."""
        self.apps[app.app_id] = app
        self._kick.set()

    def start_app(self, app: AppCoordinator) -> None:
        """Coordinate ``app`` from now on (a new app, a resumed one, or an elected replica)."""
        self.apps[app.app_id] = app
        self._app_tasks[app.app_id] = asyncio.create_task(
            self._run_app(app), name=f"app {app.app_id}"
        )
        self._kick.set()

    async def _run_app(self, app: AppCoordinator) -> None:
        d = self.discovery
        if d is not None:
            await d.publish_coordinator(self.advertising.coord_txt(app))
        try:
            await app.run()
        finally:
            self.advertising.published_claims.pop(app.app_id, None)
            if d is not None:
                with contextlib.suppress(Exception):
                    await d.withdraw_coordinator(app.app_id)

    async def settle(self) -> None:
        wait = self.started_at + self.config.browse_settle - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
