"""The one bjgrid daemon of a host: it owns zeroconf, the control port and the local socket.

``bjgrid join`` runs it as a volunteer; any other command that finds no daemon runs a private
one (not volunteering) for its own lifetime. Either way it serves the CLI over a Unix socket
in the state dir, coordinates the apps submitted on this host, and — when volunteering —
answers coordinators on its authenticated control port.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bonjourgrid.app.bundle import unpack_files
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends import leftovers
from bonjourgrid.config import Config
from bonjourgrid.control.channel import Channel, ChannelClosed, LocalChannel, serve, serve_local
from bonjourgrid.control.messages import (
    AppEnded,
    AppQuery,
    AppResults,
    AppState,
    CancelApp,
    Error,
    FetchApp,
    JournalAck,
    JournalAppend,
    Ping,
    Pong,
    ReplicaOpen,
    Replicas,
    Reserve,
    VoteRequest,
)
from bonjourgrid.coordinator.app_coordinator import AppCoordinator, Identity, Peer
from bonjourgrid.coordinator.fairshare import Claim
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.daemon import app_directory
from bonjourgrid.daemon import local_messages as lm
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.lock import DaemonLock
from bonjourgrid.daemon.status import machine_rows, ping
from bonjourgrid.daemon.volunteer_agent import VolunteerAgent
from bonjourgrid.discovery import CoordTxt, Discovery, NodeTxt
from bonjourgrid.discovery.txt import clean_attributes
from bonjourgrid.faulttolerance.election import Election
from bonjourgrid.faulttolerance.journal import AppRow, Journal
from bonjourgrid.faulttolerance.quorum import Voter
from bonjourgrid.gridkey import GridKey
from bonjourgrid.paths import Paths
from bonjourgrid.policy import Action, PolicyDriver, PolicyState
from bonjourgrid.policy.volunteer import VolunteerSettings
from bonjourgrid.states.coordinator import COORDINATING_ROLES, CoordinatorRole, Role, TermSeen
from bonjourgrid.states.coordinator import AppEnded as RoleAppEnded

log = logging.getLogger(__name__)

_TICK = 0.25
"""Housekeeping period while a lease runs (well below the shortest lease)."""
_IDLE_TICK = 5.0
"""Housekeeping period of an idle volunteer: an idle LAN stays quiet, laptops sleep."""


class NodeDaemon:
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
        listen: str = "0.0.0.0",
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
        self._published_claims: dict[str, tuple[int, int, int]] = {}
        """App -> (term, workers, demand) last published in its ``_bjg-coord`` record."""
        self.config = config
        self.key = key
        self.host = host
        self.volunteer = volunteer
        self.mdns = mdns
        self.interfaces = tuple(interfaces)
        self.listen = listen
        self.port = port
        self.static_peers = list(static_peers)
        self._static_offers: list[Offer] = []
        self.discovery: Discovery | None = None
        self.apps: dict[str, AppCoordinator] = {}
        self._app_tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = DaemonLock(paths.daemon_lock)
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = 0.0
        self._kick = asyncio.Event()
        self.me = Identity(host.node_id, host.hostname, key)
        self.journal: Journal | None = None
        self._loaded = asyncio.Event()
        """Set once the journal's apps are back (a submit waits for it, to re-attach)."""
        self._dormant: dict[str, AppRow] = {}
        """Journaled apps a private daemon resumes only when they are submitted again."""
        self.agent = VolunteerAgent(
            host=host,
            config=config,
            work_dir=paths.work_dir,
            reservation_log=paths.log_dir / "reservations.jsonl",
            on_state_change=self._advertise,
            offering=volunteer,
            on_replica=self._on_replica,
            execution_log=paths.log_dir / "executions.jsonl",
            on_rehomed=self._on_rehomed,
            trusted=self.settings.trusted,
            sandbox=self.settings.sandbox,
        )
        self.election = Election(
            me=self.me,
            config=config,
            agent=self.agent,
            discovery=lambda: self.discovery,
            promote=self._start_app,
            forget=self._forget_app,
        )

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the host's daemon lock, then open the control port, mDNS and the local socket."""
        self.paths.ensure()
        self._lock.acquire()
        try:
            for top in (self.paths.apps_dir, self.paths.work_dir):
                leftovers.reap(top)  # HTCondor/BOINC processes a crash of ours left running
            self.journal = Journal(self.paths.state_dir / "journal.sqlite")
            server = await serve(
                self.listen,
                self.port,
                key=self.key,
                node_id=self.host.node_id,
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
                self.discovery.add_listener(self._kick.set)
                await self._advertise()
            local = await serve_local(
                str(self.paths.daemon_socket), registry=lm.LOCAL, on_channel=self._on_local
            )
            self._servers.append(local)
        except BaseException:
            await self.stop()
            raise
        self.started_at = time.monotonic()
        if self.volunteer:
            self._start_policy()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._tasks.append(asyncio.create_task(self._load_journal(), name="resume apps"))
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
            try:
                await self.agent.tick()
                self.election.check([a for a in self.apps.values() if a.role.role is Role.STANDBY])
                await self._forget_old_apps()
                await self._publish_claims()
                if self.static_peers:
                    await self._refresh_static()
            except Exception:
                log.exception("housekeeping failed")

    async def _forget_old_apps(self) -> None:
        """Drop apps that ended more than ``results_keep`` ago, with their files on disk."""
        now = time.monotonic()
        for app in list(self.apps.values()):
            if app.ended_at is not None and now - app.ended_at > self.config.results_keep:
                self._forget_app(app)

    def _forget_app(self, app: AppCoordinator) -> None:
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
        self.policy = PolicyDriver(
            s.activity_source(os.getpid()),
            s.policy,
            on_action=self._on_policy_action,
            on_state=self._on_policy_state,
            has_tasks=self.agent.has_tasks,
        )
        self._tasks.append(asyncio.create_task(self.policy.run(), name="owner policy"))

    async def _on_policy_action(self, action: Action) -> None:
        if action is Action.SUSPEND:
            self.agent.suspend()
        elif action is Action.RESUME:
            self.agent.resume()
        elif action is Action.GIVE_BACK:
            limit = self.settings.policy.max_suspension
            await self.agent.give_back(f"the owner needed the machine for over {limit:g} s")

    async def _on_policy_state(self, state: PolicyState) -> None:
        self.agent.owner_busy = state is PolicyState.BUSY
        await self._advertise()

    # --- advertising -----------------------------------------------------------------------

    async def _advertise(self) -> None:
        self._kick.set()  # the volunteer's state changed: housekeeping re-times its tick
        if self.discovery is None or not self.volunteer:
            return
        h = self.host
        await self.discovery.set_volunteer(
            NodeTxt(
                grid=self.key.grid_id,
                node=h.node_id,
                host=h.hostname,
                cpus=h.cpus,
                slots=h.slots,
                mem_mb=h.mem_mb,
                os=h.os,
                arch=h.arch,
                backends=h.backends,
                policy=PolicyState.BUSY.value if self.agent.owner_busy else PolicyState.OK.value,
                app=self.agent.app,
                coordinator=self.agent.coordinator,
                attributes=self.attributes,
            )
        )

    def offers(self) -> list[Offer]:
        """Volunteers a coordinator here may recruit: from mDNS, or the static list."""
        if self.discovery is None:
            return list(self._static_offers)
        return [
            Offer(
                node=m.node,
                host=m.host,
                addresses=m.addresses,
                port=m.port,
                state=m.state,
                cpus=m.txt.cpus,
                slots=m.txt.slots,
                mem_mb=m.txt.mem_mb,
                os=m.txt.os,
                arch=m.txt.arch,
                backends=m.txt.backends,
                load=m.txt.load,
                app=m.txt.app,
                attributes=m.txt.attributes,
            )
            for m in self.discovery.machines()
            # An idle machine whose owner is at it refuses reservations: not worth asking.
            if not (m.state == "idle" and m.txt.policy == PolicyState.BUSY.value)
        ]

    async def _refresh_static(self) -> None:
        """``--local`` workers have no mDNS: learn their state by asking them directly."""
        pongs = await asyncio.gather(
            *(
                ping(a, p, self.key, self.host.node_id, self.config.ping_timeout)
                for a, p in self.static_peers
            )
        )
        h = self.host
        self._static_offers = [
            Offer(
                node=pong.node,
                host=pong.host,
                addresses=(addr,),
                port=port,
                state=pong.state,
                cpus=pong.cpus,
                slots=pong.slots,
                mem_mb=h.mem_mb,
                os=h.os,
                arch=h.arch,
                backends=pong.backends,
            )
            for (addr, port), pong in zip(self.static_peers, pongs, strict=True)
            if pong is not None
        ]

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
            app = self.apps.get(first.app)
            await ch.send(app.state() if app else AppState(first.app, 0, "", False, False))
        elif isinstance(first, FetchApp):
            await ch.send(await self._app_results(first.app))
        elif isinstance(first, CancelApp):
            app = self.apps.get(first.app)
            if app is None or not app.role.coordinating:
                await ch.send(Error(f"app {first.app} is not coordinated here"))
            else:
                await app.cancel(first.reason)
                await ch.send(app.state())
        else:
            await ch.send(Error(f"unexpected {type(first).__name__} to start a conversation"))

    # --- local socket (the CLI) -------------------------------------------------------------

    async def _on_local(self, ch: LocalChannel) -> None:
        if ch.peer_uid not in (0, os.getuid()):
            log.warning("refused local client uid %d", ch.peer_uid)
            await ch.send(lm.Failure(2, "this daemon belongs to another user"))
            return
        try:
            req = await ch.recv()
        except ChannelClosed:
            return  # a client checking that the socket answers
        handlers: dict[type, Callable[[LocalChannel, Any], Awaitable[None]]] = {
            lm.Submit: self._local_submit,
            lm.Watch: self._local_watch,
            lm.FetchResults: self._local_results,
            lm.StatusRequest: self._local_status,
            lm.AppsRequest: self._local_apps,
            lm.CancelApp: self._local_cancel,
        }
        handler = handlers.get(type(req))
        if handler is None:
            await ch.send(lm.Failure(2, f"unknown request {type(req).__name__}"))
            return
        await handler(ch, req)

    async def _local_submit(self, ch: LocalChannel, req: lm.Submit) -> None:
        await self._loaded.wait()
        if not req.fresh:
            # Re-attach to the same app.json while it runs; once ended, a submit runs it anew.
            for app in self.apps.values():
                if app.digest == req.digest and app.role.coordinating:
                    await ch.send(lm.Submitted(app.app_id, resumed=True))
                    return
            for row in list(self._dormant.values()):
                if row.digest == req.digest:
                    del self._dormant[row.app]
                    resumed = await self._resume(row)
                    if resumed is not None:
                        await ch.send(lm.Submitted(resumed.app_id, resumed=True))
                        return
        spec = AppSpec.from_json(req.spec)
        app = self.submit(
            spec,
            req.bundle,
            digest=req.digest,
            user=req.user,
            signature=req.signature,
            signer=req.signer,
        )
        await ch.send(lm.Submitted(app.app_id, resumed=False))

    def submit(
        self,
        spec: AppSpec,
        bundle: bytes,
        *,
        digest: str,
        user: str | None = None,
        signature: str = "",
        signer: str = "",
    ) -> AppCoordinator:
        assert self.journal is not None, "the daemon is not started"
        app_id = secrets.token_hex(4)
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
        )
        app = self._app_object(
            app_id=app_id,
            spec=spec,
            bundle=bundle,
            digest=digest,
            user=user,
            role=None,
            signature=signature,
            signer=signer,
        )
        self._start_app(app)
        return app

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
    ) -> AppCoordinator:
        assert self.journal is not None
        return AppCoordinator(
            app_id=app_id,
            spec=spec,
            bundle=bundle,
            digest=digest,
            user=user,
            me=self.me,
            config=self.config,
            offers=self.offers,
            store_root=self.paths.apps_dir / app_id,
            journal=self.journal,
            role=role,
            entries=entries or (),
            coordinator=coordinator,
            replicas=replicas,
            rivals=lambda: self._rivals(app_id),
            claims=self._claims,
            address=self._lan_address,
            signature=signature,
            signer=signer,
        )

    def _lan_address(self) -> str:
        """The address this machine's workers reach it at (a CE's head listens there)."""
        bound = self.discovery.addresses if self.discovery is not None else []
        return bound[0] if bound else "127.0.0.1"

    def _start_app(self, app: AppCoordinator) -> None:
        """Coordinate ``app`` from now on (a new app, a resumed one, or an elected replica)."""
        self.apps[app.app_id] = app
        self._app_tasks[app.app_id] = asyncio.create_task(
            self._run_app(app), name=f"app {app.app_id}"
        )
        self._kick.set()

    def _rivals(self, app_id: str) -> list[Peer]:
        if self.discovery is None:
            return []
        return [
            Peer(c.node, c.addresses, c.port, c.txt.term)
            for c in self.discovery.coordinators()
            if c.app == app_id and c.node != self.host.node_id
        ]

    def _claims(self) -> list[Claim]:
        """Every app's fair-share claim from the ``_bjg-coord`` records seen (ours included;
        the highest term's record when an app has two)."""
        if self.discovery is None:
            return []
        best: dict[str, CoordTxt] = {}
        for c in self.discovery.coordinators():
            if c.app not in best or c.txt.term >= best[c.app].term:
                best[c.app] = c.txt
        return [Claim(t.app, t.workers, t.demand, t.weight) for t in best.values()]

    def _coord_txt(self, app: AppCoordinator) -> CoordTxt:
        claim = app.claim()
        self._published_claims[app.app_id] = (app.term, claim.held, claim.demand)
        return CoordTxt(
            grid=self.key.grid_id,
            node=self.host.node_id,
            host=self.host.hostname,
            app=app.app_id,
            name=app.spec.name,
            user=app.user,
            term=app.term,
            workers=claim.held,
            demand=claim.demand,
            weight=app.spec.weight,
        )

    async def _publish_claims(self) -> None:
        """Update the coordinator records whose fair-share claim changed (a housekeeping
        tick apart at most, so a busy app does not announce every task)."""
        d = self.discovery
        if d is None:
            return
        for app in list(self.apps.values()):
            if app.app_id not in self._published_claims or not app.role.coordinating:
                continue
            claim = app.claim()
            if self._published_claims[app.app_id] != (app.term, claim.held, claim.demand):
                await d.publish_coordinator(self._coord_txt(app))

    async def _run_app(self, app: AppCoordinator) -> None:
        d = self.discovery
        if d is not None:
            await d.publish_coordinator(self._coord_txt(app))
        try:
            await app.run()
        finally:
            self._published_claims.pop(app.app_id, None)
            if d is not None:
                with contextlib.suppress(Exception):
                    await d.withdraw_coordinator(app.app_id)

    # --- the journal: resuming after a restart ----------------------------------------------

    async def _load_journal(self) -> None:
        """Read the journal back: ended apps serve their results until ``results_keep``;
        unfinished apps this daemon coordinated are resumed (a private daemon resumes one
        only when it is submitted again); replica copies are dropped (the reservation that
        made this machine a replica died with the old daemon)."""
        try:
            await self._read_journal()
        finally:
            self._loaded.set()

    async def _read_journal(self) -> None:
        assert self.journal is not None
        now = time.time()
        for row in self.journal.apps():
            role = Role(row.role)
            if role in COORDINATING_ROLES:
                if self.volunteer:
                    await self._resume(row)
                else:
                    self._dormant[row.app] = row
            elif role is Role.STANDBY or row.ended is None:
                self.journal.forget(row.app)
                shutil.rmtree(self.paths.apps_dir / row.app, True)
            elif now - row.ended <= self.config.results_keep:
                app = self._restore(
                    row, CoordinatorRole.restored(row.app, role, row.term, row.reason)
                )
                app.ended_at = time.monotonic() - (now - row.ended)
                app.done.set()
                self.apps[row.app] = app
            else:
                self.journal.forget(row.app)
                shutil.rmtree(self.paths.apps_dir / row.app, True)

    def _restore(self, row: AppRow, role: CoordinatorRole) -> AppCoordinator:
        assert self.journal is not None
        return self._app_object(
            app_id=row.app,
            spec=AppSpec.from_json(row.spec),
            bundle=row.bundle,
            digest=row.digest,
            user=row.user,
            role=role,
            entries=self.journal.entries(row.app),
            coordinator=(row.coordinator, row.coordinator_host),
            replicas=row.replicas,
            signature=row.signature,
            signer=row.signer,
        )

    async def _resume(self, row: AppRow) -> AppCoordinator | None:
        """Coordinate a journaled app again with a higher term — unless it moved on (a replica
        took it over, or finished it, while this daemon was down)."""
        if self.discovery is not None:
            await self._settle()
            found = await app_directory.find_holder(
                row.app, self.discovery, self.me, self.config.ping_timeout
            )
            if found is not None:
                peer, st = found
                if st.complete or (st.coordinating and st.term >= row.term):
                    log.info("app %s: held by %s now; not resumed", row.app, peer.node)
                    assert self.journal is not None
                    self.journal.update_app(
                        row.app, role=Role.STEPPED_DOWN.value, ended=time.time()
                    )
                    return None
        app = self._restore(row, CoordinatorRole.restored(row.app, Role.STANDBY, row.term))
        log.warning("app %s: resuming from the journal (%d entries)", row.app, app.seq)
        app.take_over()
        self._start_app(app)
        return app

    # --- replication (this machine keeps an app's journal) -----------------------------------

    async def _on_replica(self, msg: object) -> object | None:
        if isinstance(msg, ReplicaOpen):
            return await self._open_replica(msg)
        app = self.apps.get(getattr(msg, "app", ""))
        if isinstance(msg, (JournalAppend, Replicas)):
            # faulttolerance/quorum.py: a lower term, or a term this replica voted for
            # someone else in, is refused with the higher term (which fences the sender).
            if app is None or app.role.role is not Role.STANDBY:
                return JournalAck(msg.app, app.term if app else 0, 0, False)
            if isinstance(msg, Replicas):
                return app.follow_members(msg)
            return app.follow_append(msg)
        if isinstance(msg, AppEnded) and app is not None and app.role.role is Role.STANDBY:
            if msg.term != app.term:
                log.info("app %s ended under term %d; stale copy dropped", msg.app, msg.term)
                self._forget_app(app)
                return None
            try:
                app.role.handle(RoleAppEnded(Role(msg.outcome)))
            except ValueError:
                log.warning("app %s: bad outcome %r", msg.app, msg.outcome)
                return None
            app.ended_at = time.monotonic()
            app.done.set()
            assert self.journal is not None
            self.journal.update_app(msg.app, role=app.role.role.value, ended=time.time())
            log.info("app %s ended (%s); its results are kept here", msg.app, msg.outcome)
        return None

    def _on_rehomed(self, app_id: str, term: int) -> None:
        """A coordinator with a higher term re-homed this worker: a replica copy of an older
        term is stale (the new coordinator sends a fresh snapshot if it wants this machine)."""
        app = self.apps.get(app_id)
        if app is not None and app.role.role is Role.STANDBY and app.term < term:
            log.info(
                "app %s: term %d took over; stale copy (term %d) dropped", app_id, term, app.term
            )
            self._forget_app(app)

    async def _open_replica(self, msg: ReplicaOpen) -> JournalAck:
        old = self.apps.get(msg.app)
        if old is not None and old.role.coordinating:
            if old.term > msg.term:
                return JournalAck(msg.app, old.term, 0, False)  # fences the sender
            old.role.handle(TermSeen(msg.term + 1 if old.term == msg.term else msg.term))
            old.abandon()
        voter = old.voter if old is not None and old.role.role is Role.STANDBY else Voter()
        if not voter.accepts(msg.term, msg.coordinator):
            return JournalAck(msg.app, max(voter.term, old.term if old else 0), 0, False)
        assert self.journal is not None
        entries = [e for e in msg.entries.split("\n") if e]
        self.journal.add_app(
            app=msg.app,
            spec=msg.spec,
            bundle=msg.bundle,
            digest=msg.digest,
            user=msg.user,
            term=msg.term,
            role=Role.STANDBY.value,
            coordinator=msg.coordinator,
            coordinator_host=msg.coordinator_host,
            replicas=msg.replicas,
            entries=entries,
            signature=msg.signature,
            signer=msg.signer,
        )
        store = self.paths.apps_dir / msg.app
        await asyncio.to_thread(shutil.rmtree, store, True)
        if msg.outputs:
            (store / "tasks").mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(unpack_files, msg.outputs, store / "tasks")
        app = self._app_object(
            app_id=msg.app,
            spec=AppSpec.from_json(msg.spec),
            bundle=msg.bundle,
            digest=msg.digest,
            user=msg.user,
            role=CoordinatorRole(msg.app, role=Role.STANDBY, term=msg.term),
            entries=entries,
            coordinator=(msg.coordinator, msg.coordinator_host),
            replicas=msg.replicas,
            signature=msg.signature,
            signer=msg.signer,
        )
        app.voter = voter.follow(msg.term, msg.coordinator)
        app.save_election()
        self.apps[msg.app] = app
        self._kick.set()
        log.info(
            "app %s: keeping its journal for %s (term %d)", msg.app, msg.coordinator_host, msg.term
        )
        return JournalAck(msg.app, msg.term, msg.seq, True)

    def _app(self, app_id: str) -> AppCoordinator | None:
        return self.apps.get(app_id)

    async def _local_watch(self, ch: LocalChannel, req: lm.Watch) -> None:
        app = self._app(req.app)
        if app is None:
            await ch.send(lm.Failure(4, f"no app {req.app} on this machine"))
            return
        q = app.subscribe()
        try:
            while True:
                p = await q.get()
                await ch.send(p)
                if p.ended:
                    return
        finally:
            app.unsubscribe(q)

    async def _local_results(self, ch: LocalChannel, req: lm.FetchResults) -> None:
        """Results from here when this daemon coordinates the app or has it complete;
        otherwise from the best holder on the LAN (a takeover moved it)."""
        app = self._app(req.app)
        reply: AppResults | Error | None = None
        if app is None or not (app.role.coordinating or app.complete):
            reply = await self._remote_results(req.app)
        if reply is None and app is not None:
            reply = await self._app_results(req.app)
        if not isinstance(reply, AppResults):
            await ch.send(lm.Failure(4, f"no machine holds app {req.app}"))
            return
        await ch.send(
            lm.Results(
                app=reply.app,
                name=reply.name,
                complete=reply.complete,
                outcome=reply.outcome,
                results=reply.results,
                outputs=reply.outputs,
            )
        )

    async def _app_results(self, app_id: str) -> AppResults | Error:
        app = self._app(app_id)
        if app is None:
            return Error(f"no app {app_id} here")
        # The table first, then the files: files are in place before the table says a task
        # is done, so this order never reports a task whose files the tar would miss.
        complete, outcome, results = app.complete, app.outcome, app.results()
        outputs = await asyncio.to_thread(app.store.export)
        return AppResults(
            app=app.app_id,
            name=app.spec.name,
            term=app.term,
            complete=complete,
            outcome=outcome if complete else "",
            results=results,
            outputs=outputs,
        )

    async def _remote_results(self, app_id: str) -> AppResults | None:
        if self.discovery is None:
            return None
        await self._settle()
        timeout = max(self.config.ping_timeout, self.config.connect_timeout)
        found = await app_directory.find_holder(app_id, self.discovery, self.me, timeout)
        if found is None:
            return None
        return await app_directory.fetch(found[0], app_id, self.me, 60.0)

    async def _settle(self) -> None:
        wait = self.started_at + self.config.browse_settle - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _local_status(self, ch: LocalChannel, req: lm.StatusRequest) -> None:
        deadline = time.monotonic() + max(0.1, req.timeout)
        if self.discovery is not None:
            settle = self.started_at + self.config.browse_settle - time.monotonic()
            if settle > 0:
                await asyncio.sleep(min(settle, max(0.0, deadline - time.monotonic() - 0.3)))
            machines = self.discovery.machines()
            coords = self.discovery.coordinators()
        else:
            machines, coords = [], []
        budget = min(self.config.ping_timeout, max(0.05, deadline - time.monotonic() - 0.05))
        rows = await machine_rows(
            machines, coords, key=self.key, node_id=self.host.node_id, timeout=budget
        )
        await ch.send(lm.StatusReply(list(rows)))

    async def _local_apps(self, ch: LocalChannel, req: lm.AppsRequest) -> None:
        seen: dict[str, dict[str, object]] = {}
        if self.discovery is not None:
            await self._settle()
            for c in self.discovery.coordinators():
                if c.app in seen and int(seen[c.app]["term"]) >= c.txt.term:  # type: ignore[call-overload]
                    continue
                seen[c.app] = {
                    "app": c.app,
                    "name": c.txt.name,
                    "user": c.txt.user,
                    "coordinator": c.host,
                    "node": c.node,
                    "term": c.txt.term,
                    "state": "running",
                }
        for app in self.apps.values():
            if not (app.role.coordinating or app.complete) and app.app_id in seen:
                continue  # a replica's copy; the coordinator's record says more
            p = app.progress()
            seen[app.app_id] = {
                "app": app.app_id,
                "name": app.spec.name,
                "user": app.user,
                "coordinator": app.coordinator[1],
                "node": app.coordinator[0],
                "term": app.term,
                "state": p.outcome or p.role,
                "counts": p.counts,
                "workers": p.workers,
            }
        await ch.send(lm.AppsReply(list(seen.values())))

    async def _local_cancel(self, ch: LocalChannel, req: lm.CancelApp) -> None:
        app = self._app(req.app)
        if app is not None and app.role.coordinating:
            await app.cancel()
            await ch.send(lm.Ok(f"app {req.app} cancelled"))
            return
        if self.discovery is not None:
            await self._settle()
            peers = self._rivals(req.app)
            why = "no coordinator record"
            for peer in sorted(peers, key=lambda p: -p.term):
                why = await app_directory.cancel(
                    peer, req.app, self.me, self.config.connect_timeout, "cancelled by the user"
                )
                if not why:
                    await ch.send(lm.Ok(f"app {req.app} cancelled"))
                    return
            if peers or app is not None:
                await ch.send(lm.Failure(4, f"app {req.app} could not be cancelled: {why}"))
                return
        await ch.send(lm.Failure(4, f"no machine coordinates app {req.app}"))
