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

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.config import Config
from bonjourgrid.control.channel import Channel, ChannelClosed, LocalChannel, serve, serve_local
from bonjourgrid.control.messages import Error, Ping, Pong, Reserve
from bonjourgrid.coordinator.app_coordinator import AppCoordinator, Identity
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.daemon import local_messages as lm
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.lock import DaemonLock
from bonjourgrid.daemon.status import machine_rows, ping
from bonjourgrid.daemon.volunteer_agent import VolunteerAgent
from bonjourgrid.discovery import CoordTxt, Discovery, NodeTxt
from bonjourgrid.gridkey import GridKey
from bonjourgrid.paths import Paths

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
    ) -> None:
        self.paths = paths
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
        self.agent = VolunteerAgent(
            host=host,
            config=config,
            work_dir=paths.work_dir,
            reservation_log=paths.log_dir / "reservations.jsonl",
            on_state_change=self._advertise,
            offering=volunteer,
        )

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the host's daemon lock, then open the control port, mDNS and the local socket."""
        self.paths.ensure()
        self._lock.acquire()
        try:
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
                await self._advertise()
            local = await serve_local(
                str(self.paths.daemon_socket), registry=lm.LOCAL, on_channel=self._on_local
            )
            self._servers.append(local)
        except BaseException:
            await self.stop()
            raise
        self.started_at = time.monotonic()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        log.info(
            "daemon %s (%s) up on port %d, grid %s%s",
            self.host.node_id,
            self.host.hostname,
            self.port,
            self.key.grid_id,
            ", volunteering" if self.volunteer else "",
        )

    async def stop(self) -> None:
        """Cancel this host's apps (releasing their workers), say mDNS goodbyes, let go."""
        for app in list(self.apps.values()):
            await app.cancel("the coordinator's daemon is stopping")
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
        self._lock.release()

    async def _housekeeping(self) -> None:
        while True:
            busy = self.agent.state != "idle" or bool(self.static_peers)
            self._kick.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), _TICK if busy else _IDLE_TICK)
            try:
                await self.agent.tick()
                await self._forget_old_apps()
                if self.static_peers:
                    await self._refresh_static()
            except Exception:
                log.exception("housekeeping failed")

    async def _forget_old_apps(self) -> None:
        """Drop apps that ended more than ``results_keep`` ago, with their files on disk."""
        now = time.monotonic()
        for app_id, app in list(self.apps.items()):
            if app.ended_at is not None and now - app.ended_at > self.config.results_keep:
                del self.apps[app_id]
                self._app_tasks.pop(app_id, None)
                await asyncio.to_thread(shutil.rmtree, app.store.root, True)

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
                app=self.agent.app,
                coordinator=self.agent.coordinator,
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
            )
            for m in self.discovery.machines()
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
        if not req.fresh:
            # Re-attach to the same app.json while it runs; once ended, a submit runs it anew.
            for app in self.apps.values():
                if app.digest == req.digest and not app.role.ended:
                    await ch.send(lm.Submitted(app.app_id, resumed=True))
                    return
        spec = AppSpec.from_json(req.spec)
        app = self.submit(spec, req.bundle, digest=req.digest, user=req.user)
        await ch.send(lm.Submitted(app.app_id, resumed=False))

    def submit(
        self, spec: AppSpec, bundle: bytes, *, digest: str, user: str | None = None
    ) -> AppCoordinator:
        app_id = secrets.token_hex(4)
        app = AppCoordinator(
            app_id=app_id,
            spec=spec,
            bundle=bundle,
            digest=digest,
            user=user or getpass.getuser(),
            me=Identity(self.host.node_id, self.host.hostname, self.key),
            config=self.config,
            offers=self.offers,
            store_root=self.paths.apps_dir / app_id,
        )
        self.apps[app_id] = app
        self._app_tasks[app_id] = asyncio.create_task(self._run_app(app), name=f"app {app_id}")
        return app

    async def _run_app(self, app: AppCoordinator) -> None:
        d = self.discovery
        if d is not None:
            await d.publish_coordinator(
                CoordTxt(
                    grid=self.key.grid_id,
                    node=self.host.node_id,
                    host=self.host.hostname,
                    app=app.app_id,
                    name=app.spec.name,
                    user=app.user,
                    term=app.term,
                )
            )
        try:
            await app.run()
        finally:
            if d is not None:
                with contextlib.suppress(Exception):
                    await d.withdraw_coordinator(app.app_id)

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
        app = self._app(req.app)
        if app is None:
            await ch.send(lm.Failure(4, f"no machine holds app {req.app}"))
            return
        outputs = await asyncio.to_thread(app.store.export)
        await ch.send(
            lm.Results(
                app=app.app_id,
                name=app.spec.name,
                complete=app.role.ended,
                outcome=app.outcome,
                results=app.results(),
                outputs=outputs,
            )
        )

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
            for c in self.discovery.coordinators():
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
            p = app.progress()
            seen[app.app_id] = {
                "app": app.app_id,
                "name": app.spec.name,
                "user": app.user,
                "coordinator": self.host.hostname,
                "node": self.host.node_id,
                "term": app.term,
                "state": p.outcome or p.role,
                "counts": p.counts,
                "workers": p.workers,
            }
        await ch.send(lm.AppsReply(list(seen.values())))

    async def _local_cancel(self, ch: LocalChannel, req: lm.CancelApp) -> None:
        app = self._app(req.app)
        if app is None:
            await ch.send(lm.Failure(4, f"app {req.app} is not coordinated by this machine"))
            return
        await app.cancel()
        await ch.send(lm.Ok(f"app {req.app} cancelled"))
