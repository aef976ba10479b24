"""``Discovery``: the host's one mDNS stack (DESIGN.md: one per machine), its records, its view.

Theory of operation
-------------------
Desired state is kept apart from the network: ``_volunteer`` (one NodeTxt or None) and
``_coords`` (one CoordTxt per app). While an mDNS stack runs (``_aiozc``), each desired record
is registered on it, without probing (``cooperating_responders=True``: our instance labels carry
the node id, so nobody else owns them). An Idle<->Worker change withdraws the old record
(goodbye) and registers the new one; a TXT-only change is an update.

A background task polls ``select_addresses``; when the bound set changes, the stack is closed
(goodbyes) and a new one started on the new addresses, re-registering the desired records and
restarting the browsers. Records seen by the old stack that the new one does not see again
within ``RESTART_SETTLE`` leave the view. With no usable address there is no stack: records
wait in the desired state and the poll keeps looking.

A slow start is waited for, never a crash (issue 16): on a loaded machine zeroconf's engine
may not be up within its own 9 s (``NotRunningException``, after which that instance can never
start). A new stack is watched until it runs, up to ``start_patience``, with a warning every
``start_wait`` seconds; records are registered only once it runs. A stack that still is not
running (or that stops under a registration) is closed and the address poll starts a new one,
the records waiting in the desired state meanwhile.

One browser covers the three types. Added/Updated starts an owned resolve task (answered from
cache as a rule: replies carry SRV, TXT and A together); Removed drops the record. Records with
another grid id are ignored; malformed TXT is dropped and logged once. Our own records come
from the desired state, not from the network.

Threading: every method runs in the asyncio loop that called ``start()``; listeners are
called in that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence

from zeroconf import IPVersion, NotRunningException, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .interfaces import DiscoveryError, select_addresses
from .names import (
    ALL_TYPES,
    COORD_TYPE,
    IDLE_TYPE,
    WORKER_TYPE,
    instance_label,
    instance_of,
    server_name,
)
from .txt import (
    CoordTxt,
    NodeTxt,
    TxtError,
    decode_coord,
    decode_node,
    encode_coord,
    encode_node,
    with_revision,
)
from .view import CoordinatorRecord, Machine, Record, View

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 1000
"""How long to wait for SRV/TXT/A not already in the cache. Announcements and answers carry all
of them, so a resolve is normally instant; one unanswered query is retried within this time."""
RESTART_SETTLE = 3.0
"""After a restart on new addresses, how long records seen only by the old stack stay listed.
A fresh browse resolves 32 services in ~0.09 s (DESIGN.md); this leaves a wide margin."""
START_WAIT = 9.0
"""A starting mDNS stack later than this is reported (zeroconf's own start-up wait)."""
START_PATIENCE = 60.0
"""How long a new stack is waited for in all before it is closed and retried by the poll: a
2-core machine starting many daemons under CPU load took more than 9 s (issue 16)."""
_START_POLL = 0.02
"""How often a starting stack is looked at (a start normally takes a few milliseconds)."""
_REVISION_MODULUS = 10**9
"""Revisions wrap here (9 digits in the TXT record)."""
_NO_INTERFACE = "no usable network interface for mDNS"
_MAX_REJECTED_MEMORY = 1024
"""Bound on remembered malformed records (logged once each), so a noisy peer cannot grow it."""


class Discovery:
    """Advertises this host's records and browses the grid's. See the module docstring."""

    def __init__(
        self,
        *,
        grid_id: str,
        node_id: str,
        hostname: str,
        port: int,
        interfaces: Sequence[str] = (),
        interface_poll: float = 5.0,
        browse: bool = True,
        start_wait: float = START_WAIT,
        start_patience: float = START_PATIENCE,
    ) -> None:
        self.grid_id = grid_id
        self.node_id = node_id
        self.hostname = hostname
        self.port = port
        self._requested = tuple(interfaces)
        self._interface_poll = interface_poll
        self._browse = browse
        self._start_wait = start_wait
        self._start_patience = start_patience
        self._stack_lost = False
        """The running stack stopped under us (NotRunningException): the poll restarts it."""
        self._server = server_name(hostname, node_id)
        self._label = instance_label(hostname, node_id)
        # Desired state.
        self._volunteer: NodeTxt | None = None
        self._coords: dict[str, CoordTxt] = {}
        # The running stack and what is registered on it.
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._addresses: list[str] = []
        self._volunteer_info: ServiceInfo | None = None
        self._coord_infos: dict[str, ServiceInfo] = {}
        self._browse_started = 0.0
        # Random start: a restarted daemon does not repeat its predecessor's packets either.
        self._revision = secrets.randbelow(_REVISION_MODULUS)
        # The view.
        self._view = View()
        self._own_names: set[str] = set()
        self._present: set[str] = set()  # names the browser reported Added and not Removed
        self._rejected: set[tuple[str, bytes]] = set()
        self._listeners: list[Callable[[], None]] = []
        # Tasks we own.
        self._lock = asyncio.Lock()
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._broadcasts: dict[str, asyncio.Future[object]] = {}  # by ServiceInfo.key
        self._poll_task: asyncio.Task[None] | None = None
        self._stale_task: asyncio.Task[None] | None = None
        self._last_poll_problem = ""
        self._closed = False

    # --- public API ---------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        """The IPv4 addresses the mDNS stack is bound to (empty while there are none)."""
        return list(self._addresses)

    async def start(self) -> None:
        """Starts the stack on ``select_addresses(interfaces)`` and the address poll.

        Raises DiscoveryError if a requested interface or address does not exist. With no
        usable interface at all, starts without a stack and keeps polling.
        """
        if self._poll_task is not None or self._closed:
            raise DiscoveryError("Discovery.start() called twice or after close()")
        addresses = select_addresses(self._requested)
        async with self._lock:
            if not addresses:
                self._last_poll_problem = _NO_INTERFACE
                log.warning("%s; will keep looking", _NO_INTERFACE)
            await self._start_stack(addresses)
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_interfaces())

    async def set_volunteer(self, txt: NodeTxt | None) -> None:
        """Publishes exactly one volunteer record: idle (``txt.app`` None) or worker; None
        publishes none. Raises TxtError (nothing changed) if ``txt`` cannot be encoded."""
        async with self._lock:
            info = None
            if txt is not None:
                self._check_own(txt.grid, txt.node)
                type_ = IDLE_TYPE if txt.app is None else WORKER_TYPE
                info = self._info(type_, self._label, encode_node(txt))
            self._volunteer = txt
            if self._aiozc is not None:
                old = self._volunteer_info
                if info is not None and old is not None and old.type == info.type:
                    await self._update(info)
                else:
                    # New record first: the old one's goodbye then leaves out the address
                    # records (still in use), so peers never see our A record flap.
                    if info is not None:
                        await self._register(info)
                    if old is not None:
                        await self._unregister(old)
                self._volunteer_info = info
            self._refresh_own()

    async def publish_coordinator(self, txt: CoordTxt) -> None:
        """Publishes (or updates) the ``_bjg-coord`` record of ``txt.app``. Raises TxtError."""
        async with self._lock:
            self._check_own(txt.grid, txt.node)
            label = instance_label(self.hostname, self.node_id, txt.app)
            info = self._info(COORD_TYPE, label, encode_coord(txt))
            self._coords[txt.app] = txt
            if self._aiozc is not None:
                if txt.app in self._coord_infos:
                    await self._update(info)
                else:
                    await self._register(info)
                self._coord_infos[txt.app] = info
            self._refresh_own()

    async def withdraw_coordinator(self, app: str) -> None:
        """Withdraws the ``_bjg-coord`` record of ``app`` (goodbye); no-op if none."""
        async with self._lock:
            self._coords.pop(app, None)
            info = self._coord_infos.pop(app, None)
            if info is not None and self._aiozc is not None:
                await self._unregister(info)
            self._refresh_own()

    def machines(self) -> list[Machine]:
        """This grid's volunteers as seen now, our own record included, one per node."""
        return self._view.machines()

    def coordinators(self) -> list[CoordinatorRecord]:
        """This grid's coordinator records as seen now, ours included."""
        return self._view.coordinators()

    def add_listener(self, cb: Callable[[], None]) -> None:
        """``cb()`` is called in the loop after any change of the view."""
        self._listeners.append(cb)

    async def wait_settled(self, seconds: float) -> None:
        """Returns once the browser has been running ``seconds`` (the settle window in which
        a fresh browser collects its first answers); at once if it has run that long."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._browse_started + seconds - loop.time()))

    async def close(self) -> None:
        """Withdraws every record (goodbyes) and closes the stack. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        async with self._lock:
            await self._stop_stack()
            self._volunteer = None
            self._coords.clear()
            self._view.clear()

    # --- the stack ----------------------------------------------------------------------

    async def _start_stack(self, addresses: list[str]) -> None:
        """Starts a stack on ``addresses`` (none: no stack), registering the desired records.
        A stack that does not come up in ``start_patience`` is closed (the poll retries)."""
        self._addresses = []
        self._stack_lost = False
        if addresses:
            try:
                self._aiozc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
            except OSError as e:  # an address vanished between selection and bind
                log.warning("cannot open mDNS on %s: %s; will retry", ", ".join(addresses), e)
                self._aiozc = None
            else:
                if await self._wait_running(self._aiozc):
                    self._addresses = list(addresses)
                    await self._register_desired()
                    if not self._stack_lost:
                        self._start_browser()
                else:
                    await self._drop_stack()
        self._refresh_own()

    async def _wait_running(self, aiozc: AsyncZeroconf) -> bool:
        """Whether the stack's engine runs within ``start_patience`` (see the module doc).

        Polls ``Zeroconf.started`` rather than calling ``async_wait_for_start``: when that
        wait times out, zeroconf resolves the engine's start future with None, and the
        instance can then never count as started (every later registration raises
        NotRunningException) — the cause of the crash of issue 16.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_note = started + self._start_wait
        while not aiozc.zeroconf.started:
            now = loop.time()
            if aiozc.zeroconf.done or now - started >= self._start_patience:
                log.warning(
                    "mDNS stack not running after %.1f s; closing it, will retry", now - started
                )
                return False
            if now >= next_note:
                log.warning(
                    "mDNS stack slow to start (%.1f s so far); still waiting", now - started
                )
                next_note = now + self._start_wait
            await asyncio.sleep(_START_POLL)
        if loop.time() - started > self._start_wait:
            log.info("mDNS stack up after %.1f s", loop.time() - started)
        return True

    async def _drop_stack(self) -> None:
        """Closes a stack that never ran or stopped: no goodbyes can go out on it."""
        aiozc, self._aiozc = self._aiozc, None
        self._volunteer_info = None
        self._coord_infos.clear()
        self._addresses = []
        if aiozc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(aiozc.async_close(), 5.0)

    def _lost(self, doing: str, info: ServiceInfo) -> None:
        if not self._stack_lost:
            log.warning("mDNS stack not running while %s %s; will restart it", doing, info.name)
        self._stack_lost = True

    async def _register_desired(self) -> None:
        assert self._aiozc is not None
        if self._volunteer is not None:
            type_ = IDLE_TYPE if self._volunteer.app is None else WORKER_TYPE
            self._volunteer_info = self._info(type_, self._label, encode_node(self._volunteer))
            await self._register(self._volunteer_info)
        for app, txt in self._coords.items():
            label = instance_label(self.hostname, self.node_id, app)
            self._coord_infos[app] = self._info(COORD_TYPE, label, encode_coord(txt))
            await self._register(self._coord_infos[app])

    def _start_browser(self) -> None:
        assert self._aiozc is not None
        loop = asyncio.get_running_loop()
        self._browse_started = loop.time()
        if not self._browse:
            return
        self._view.generation += 1
        if self._view.generation > 1:
            self._stale_task = loop.create_task(self._drop_stale(self._view.generation))
        self._browser = AsyncServiceBrowser(
            self._aiozc.zeroconf, list(ALL_TYPES), handlers=[self._on_state_change]
        )

    async def _stop_stack(self) -> None:
        """Cancels our tasks, stops browsing, sends goodbyes for everything, closes."""
        for task in self._resolving.values():
            task.cancel()
        for future in self._broadcasts.values():
            future.cancel()
        if self._stale_task is not None:
            self._stale_task.cancel()
        self._resolving.clear()
        self._broadcasts.clear()
        self._present.clear()
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if self._aiozc is not None:
            aiozc, self._aiozc = self._aiozc, None
            try:
                await aiozc.async_close()  # unregister all (goodbyes), then close
            except OSError as e:  # the interface may be gone already
                log.info("closing mDNS: %s", e)
        self._volunteer_info = None
        self._coord_infos.clear()
        self._addresses = []

    async def _poll_interfaces(self) -> None:
        while True:
            await asyncio.sleep(self._interface_poll)
            try:
                addresses = select_addresses(self._requested)
                problem = "" if addresses else _NO_INTERFACE
            except DiscoveryError as e:
                addresses, problem = [], str(e)
            if problem and problem != self._last_poll_problem:
                log.warning("%s; will keep looking", problem)
            self._last_poll_problem = problem
            if addresses == self._addresses and not self._stack_lost:
                continue
            async with self._lock:
                if self._closed:
                    return
                if self._stack_lost:
                    log.info("restarting the mDNS stack on %s", addresses or "none")
                else:
                    log.info(
                        "mDNS addresses %s -> %s", self._addresses or "none", addresses or "none"
                    )
                await self._stop_stack()
                await self._start_stack(addresses)

    async def _drop_stale(self, generation: int) -> None:
        await asyncio.sleep(RESTART_SETTLE)
        if self._view.drop_older_than(generation, keep=self._own_names):
            self._notify()

    # --- registration helpers -----------------------------------------------------------

    def _check_own(self, grid: str, node: str) -> None:
        if grid != self.grid_id or node != self.node_id:
            raise ValueError(
                f"record for grid {grid}, node {node}: this is grid {self.grid_id}, "
                f"node {self.node_id}"
            )

    def _info(self, type_: str, label: str, props: dict[str, str]) -> ServiceInfo:
        """A record to publish, with a fresh revision (see txt.REVISION_KEY for why)."""
        self._revision = (self._revision + 1) % _REVISION_MODULUS
        return ServiceInfo(
            type_,
            f"{label}.{type_}",
            port=self.port,
            properties=with_revision(props, self._revision),
            server=self._server,
            parsed_addresses=list(self._addresses),
        )

    async def _register(self, info: ServiceInfo) -> None:
        assert self._aiozc is not None
        self._cancel_broadcast(info)
        try:
            broadcast = await self._aiozc.async_register_service(info, cooperating_responders=True)
        except NotRunningException:
            self._lost("registering", info)
            return
        self._keep_broadcast(info, broadcast)

    async def _update(self, info: ServiceInfo) -> None:
        assert self._aiozc is not None
        self._cancel_broadcast(info)
        try:
            broadcast = await self._aiozc.async_update_service(info)
        except NotRunningException:
            self._lost("updating", info)
            return
        self._keep_broadcast(info, broadcast)

    async def _unregister(self, info: ServiceInfo) -> None:
        assert self._aiozc is not None
        self._cancel_broadcast(info)
        try:
            broadcast = await self._aiozc.async_unregister_service(info)
        except NotRunningException:
            self._lost("withdrawing", info)
            return
        self._keep_broadcast(info, broadcast)

    def _cancel_broadcast(self, info: ServiceInfo) -> None:
        """Stops the announcements (or goodbyes) still pending for ``info``'s name.

        zeroconf repeats each announcement for ~0.5 s from the ServiceInfo it was given and does
        not stop on unregister or update: left alone, a withdrawn record would be announced
        again, or an updated one with its old TXT.
        """
        pending = self._broadcasts.pop(info.key, None)
        if pending is not None:
            pending.cancel()

    def _keep_broadcast(self, info: ServiceInfo, broadcast: Awaitable[object]) -> None:
        future = asyncio.ensure_future(broadcast)
        self._broadcasts[info.key] = future
        future.add_done_callback(lambda f: self._forget_broadcast(info.key, f))

    def _forget_broadcast(self, key: str, future: asyncio.Future[object]) -> None:
        if self._broadcasts.get(key) is future:
            del self._broadcasts[key]

    def _refresh_own(self) -> None:
        """Puts our desired records in the view, in place of any previous own records."""
        addresses = tuple(self._addresses)
        own: dict[str, Record] = {}
        if self._volunteer is not None:
            t = self._volunteer
            state, type_ = ("idle", IDLE_TYPE) if t.app is None else ("worker", WORKER_TYPE)
            own[f"{self._label}.{type_}"] = Machine(
                t.node, t.host, state, addresses, self.port, t, self._label
            )
        for app, c in self._coords.items():
            label = instance_label(self.hostname, self.node_id, app)
            own[f"{label}.{COORD_TYPE}"] = CoordinatorRecord(
                c.node, c.host, c.app, addresses, self.port, c
            )
        changed = False
        for name in self._own_names - {n.lower() for n in own}:
            changed |= self._view.drop(name)
        for name, record in own.items():
            changed |= self._view.put(name, record)
        self._own_names |= {n.lower() for n in own}
        if changed:
            self._notify()

    # --- browsing -----------------------------------------------------------------------

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        key = name.lower()
        if key in self._own_names:
            return
        if state_change is ServiceStateChange.Updated and key not in self._present:
            # zeroconf reports an address change to every service of that host still in its
            # cache, including one just withdrawn (its records linger 1 s after a goodbye).
            return
        previous = self._resolving.pop(key, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            self._present.discard(key)
            if self._view.drop(key):
                self._notify()
            return
        self._present.add(key)
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._resolving[key] = task
        task.add_done_callback(lambda t: self._forget_resolve(key, t))

    def _forget_resolve(self, key: str, task: asyncio.Task[None]) -> None:
        if self._resolving.get(key) is task:
            del self._resolving[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("resolving %s failed", key, exc_info=task.exception())

    async def _resolve(self, zc: Zeroconf, type_: str, name: str) -> None:
        info = AsyncServiceInfo(type_, name)
        if not await info.async_request(zc, RESOLVE_TIMEOUT_MS):
            log.debug("%s did not resolve", name)
            return
        record = self._record_of(type_, name, info)
        changed = self._view.put(name, record) if record else self._view.drop(name)
        if changed:
            self._notify()

    def _record_of(self, type_: str, name: str, info: AsyncServiceInfo) -> Record | None:
        """The view's record for a resolved service, or None (another grid, or malformed)."""
        addresses = tuple(info.parsed_addresses(IPVersion.V4Only))
        port = info.port or 0
        try:
            if type_ == COORD_TYPE:
                c = decode_coord(info.properties)
                if c.grid != self.grid_id:
                    return None
                return CoordinatorRecord(c.node, c.host, c.app, addresses, port, c)
            t = decode_node(info.properties)
        except TxtError as e:
            self._reject(name, info.text or b"", e)
            return None
        if t.grid != self.grid_id:
            return None
        state = "idle" if type_ == IDLE_TYPE else "worker"
        return Machine(t.node, t.host, state, addresses, port, t, instance_of(name, type_))

    def _reject(self, name: str, text: bytes, error: TxtError) -> None:
        key = (name.lower(), text)
        if key in self._rejected:
            return
        if len(self._rejected) >= _MAX_REJECTED_MEMORY:
            self._rejected.clear()
        self._rejected.add(key)
        log.warning("ignoring %s: malformed TXT record (%s)", name, error)

    def _notify(self) -> None:
        for cb in list(self._listeners):
            try:
                cb()
            except Exception:
                log.exception("discovery listener %r failed", cb)
