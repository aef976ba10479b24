"""``Discovery``: the host's one mDNS stack (DESIGN.md: one per machine), its records, its view.

Theory of operation
-------------------
Desired state is kept apart from the network: ``_volunteer`` (one NodeTxt or None) and
``_coords`` (one CoordTxt per app). While an mDNS stack runs (``_stacks``), each desired record
is registered on it, without probing (``cooperating_responders=True``: our instance labels carry
the node id, so nobody else owns them). An Idle<->Worker change withdraws the old record
(goodbye) and registers the new one; a TXT-only change is an update.

"The stack" is one ``LinkStack`` per link (link_stack.py: sockets tied to the interface), each
advertising that link's addresses only and learning records that belong to it: a record is kept
per (name, link) and the view merges a peer's links, every address scoped to the interface it
was learned on (control/addresses.py). IPv6 link-local addresses are bound and advertised
beside IPv4 ones.

A background task polls ``select_links``; when the bound set changes, the stacks are closed
(goodbyes) and new ones started on the new links, re-registering the desired records and
restarting the browsers. Records seen by the old stack that the new one does not see again
within ``RESTART_SETTLE`` (browse.py) leave the view. With no usable address there is no
stack: records wait in the desired state and the poll keeps looking.

A slow start is waited for, never a crash (issue 16): on a loaded machine zeroconf's engine
may not be up within its own 9 s (``NotRunningException``, after which that instance can never
start). A new stack is watched until it runs, up to ``start_patience``, with a warning every
``start_wait`` seconds; records are registered only once it runs. A stack that still is not
running (or that stops under a registration) is closed and the address poll starts a new one,
the records waiting in the desired state meanwhile.

Browsing is browse.py's ``GridBrowser``: one browser per stack covers the three types and
feeds the view; our own records come from the desired state, not from the network.

Threading: every method runs in the asyncio loop that called ``start()``; listeners are
called in that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Callable, Sequence

from zeroconf import ServiceInfo

from bonjourgrid.control.addresses import scoped

from .browse import GridBrowser
from .interfaces import DiscoveryError, Link, select_links
from .link_stack import LinkStack, StackLost
from .names import COORD_TYPE, IDLE_TYPE, WORKER_TYPE, instance_label, server_name
from .txt import CoordTxt, NodeTxt, encode_coord, encode_node, with_revision
from .view import CoordinatorRecord, Machine, Record, View

log = logging.getLogger(__name__)

START_WAIT = 9.0
"""A starting mDNS stack later than this is reported (zeroconf's own start-up wait)."""
START_PATIENCE = 60.0
"""How long a new stack is waited for in all before it is closed and retried by the poll: a
2-core machine starting many daemons under CPU load took more than 9 s (issue 16)."""
_REVISION_MODULUS = 10**9
"""Revisions wrap here (9 digits in the TXT record)."""
_NO_INTERFACE = "no usable network interface for mDNS"


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
        ipv6: bool = True,
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
        self._ipv6 = ipv6
        self._stack_lost = False
        """The running stack stopped under us (NotRunningException): the poll restarts it."""
        self._server = server_name(hostname, node_id)
        self._label = instance_label(hostname, node_id)
        # Desired state.
        self._volunteer: NodeTxt | None = None
        self._coords: dict[str, CoordTxt] = {}
        # The running stacks (one per link) and what is registered on them.
        self._stacks: dict[str, LinkStack] = {}
        self._links: list[Link] = []
        self._browse_started = 0.0
        # Random start: a restarted daemon does not repeat its predecessor's packets either.
        self._revision = secrets.randbelow(_REVISION_MODULUS)
        # The view.
        self._view = View()
        self._own_names: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self._browser = GridBrowser(
            grid_id=grid_id, view=self._view, own_names=self._own_names, notify=self._notify
        )
        # Tasks we own.
        self._lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self._last_poll_problem = ""
        self._closed = False

    # --- public API ---------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        """The IPv4 addresses the mDNS stacks are bound to, sorted (empty while none)."""
        return sorted(
            {a for link in self._links for a in link.ipv4}, key=lambda a: socket.inet_aton(a)
        )

    @property
    def links(self) -> list[Link]:
        """The links the mDNS stacks run on, with the addresses bound there."""
        return list(self._links)

    async def start(self) -> None:
        """Starts a stack per link of ``select_links(interfaces)`` and the address poll.

        Raises DiscoveryError if a requested interface or address does not exist. With no
        usable interface at all, starts without a stack and keeps polling.
        """
        if self._poll_task is not None or self._closed:
            raise DiscoveryError("Discovery.start() called twice or after close()")
        links = select_links(self._requested, ipv6=self._ipv6)
        async with self._lock:
            if not links:
                self._last_poll_problem = _NO_INTERFACE
                log.warning("%s; will keep looking", _NO_INTERFACE)
            await self._start_stack(links)
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_interfaces())

    async def set_volunteer(self, txt: NodeTxt | None) -> None:
        """Publishes exactly one volunteer record: idle (``txt.app`` None) or worker; None
        publishes none. Raises TxtError (nothing changed) if ``txt`` cannot be encoded."""
        async with self._lock:
            props = None
            if txt is not None:
                self._check_own(txt.grid, txt.node)
                type_ = IDLE_TYPE if txt.app is None else WORKER_TYPE
                props = encode_node(txt)
            self._volunteer = txt
            revision = self._next_revision()
            for stack in self._running():
                info = None
                if txt is not None and props is not None:
                    info = self._info(stack, type_, self._label, props, revision)
                old = stack.volunteer_info
                try:
                    if info is not None and old is not None and old.type == info.type:
                        await stack.update(info)
                    else:
                        # New record first: the old one's goodbye then leaves out the address
                        # records (still in use), so peers never see our A record flap.
                        if info is not None:
                            await stack.register(info)
                        if old is not None:
                            await stack.unregister(old)
                except StackLost as e:
                    self._lost(stack, e)
                stack.volunteer_info = info
            self._refresh_own()

    async def publish_coordinator(self, txt: CoordTxt) -> None:
        """Publishes (or updates) the ``_bjg-coord`` record of ``txt.app``. Raises TxtError."""
        async with self._lock:
            self._check_own(txt.grid, txt.node)
            label = instance_label(self.hostname, self.node_id, txt.app)
            props = encode_coord(txt)
            self._coords[txt.app] = txt
            revision = self._next_revision()
            for stack in self._running():
                info = self._info(stack, COORD_TYPE, label, props, revision)
                try:
                    if txt.app in stack.coord_infos:
                        await stack.update(info)
                    else:
                        await stack.register(info)
                except StackLost as e:
                    self._lost(stack, e)
                stack.coord_infos[txt.app] = info
            self._refresh_own()

    async def withdraw_coordinator(self, app: str) -> None:
        """Withdraws the ``_bjg-coord`` record of ``app`` (goodbye); no-op if none."""
        async with self._lock:
            self._coords.pop(app, None)
            for stack in self._running():
                info = stack.coord_infos.pop(app, None)
                if info is not None:
                    try:
                        await stack.unregister(info)
                    except StackLost as e:
                        self._lost(stack, e)
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

    # --- the stacks ---------------------------------------------------------------------

    def _running(self) -> list[LinkStack]:
        return [s for s in self._stacks.values() if s.aiozc is not None]

    async def _start_stack(self, links: list[Link]) -> None:
        """Starts a stack per link (none: no stack), registering the desired records. A
        stack that does not come up in ``start_patience`` is closed (the poll retries)."""
        self._links = []
        self._stack_lost = False
        for link in links:
            stack = LinkStack(link)
            try:
                stack.open()
            except OSError as e:  # an address vanished between selection and bind
                log.warning("cannot open mDNS on %s: %s; will retry", link.name, e)
                self._stack_lost = True
                continue
            self._stacks[link.name] = stack
        waits = [
            s.wait_running(self._start_wait, self._start_patience) for s in self._stacks.values()
        ]
        for stack, ok in zip(
            list(self._stacks.values()), await asyncio.gather(*waits), strict=True
        ):
            if not ok:
                await stack.drop()
                del self._stacks[stack.link.name]
                self._stack_lost = True
        self._links = [s.link for s in self._stacks.values()]
        for stack in list(self._stacks.values()):
            await self._register_desired(stack)
        if self._stacks and not self._stack_lost:
            self._start_browsers()
        self._refresh_own()

    def _lost(self, stack: LinkStack, error: StackLost) -> None:
        if not self._stack_lost:
            log.warning("mDNS stack on %s not running (%s); will restart", stack.link.name, error)
        self._stack_lost = True

    async def _register_desired(self, stack: LinkStack) -> None:
        revision = self._next_revision()
        try:
            if self._volunteer is not None:
                type_ = IDLE_TYPE if self._volunteer.app is None else WORKER_TYPE
                stack.volunteer_info = self._info(
                    stack, type_, self._label, encode_node(self._volunteer), revision
                )
                await stack.register(stack.volunteer_info)
            for app, txt in self._coords.items():
                label = instance_label(self.hostname, self.node_id, app)
                stack.coord_infos[app] = self._info(
                    stack, COORD_TYPE, label, encode_coord(txt), revision
                )
                await stack.register(stack.coord_infos[app])
        except StackLost as e:
            self._lost(stack, e)

    def _start_browsers(self) -> None:
        self._browse_started = asyncio.get_running_loop().time()
        if self._browse:
            self._browser.start(self._running())

    async def _stop_stack(self) -> None:
        """Cancels our tasks, stops browsing, sends goodbyes for everything, closes."""
        self._browser.stop()
        stacks, self._stacks = list(self._stacks.values()), {}
        await asyncio.gather(*(s.close() for s in stacks))
        self._links = []

    async def _poll_interfaces(self) -> None:
        while True:
            await asyncio.sleep(self._interface_poll)
            try:
                links = select_links(self._requested, ipv6=self._ipv6)
                problem = "" if links else _NO_INTERFACE
            except DiscoveryError as e:
                links, problem = [], str(e)
            if problem and problem != self._last_poll_problem:
                log.warning("%s; will keep looking", problem)
            self._last_poll_problem = problem
            if links == self._links and not self._stack_lost:
                continue
            async with self._lock:
                if self._closed:
                    return
                if self._stack_lost:
                    log.info("restarting mDNS on %s", _names(links))
                else:
                    log.info("mDNS links %s -> %s", _names(self._links), _names(links))
                await self._stop_stack()
                await self._start_stack(links)

    # --- registration helpers -----------------------------------------------------------

    def _check_own(self, grid: str, node: str) -> None:
        if grid != self.grid_id or node != self.node_id:
            raise ValueError(
                f"record for grid {grid}, node {node}: this is grid {self.grid_id}, "
                f"node {self.node_id}"
            )

    def _next_revision(self) -> int:
        """A fresh revision for one publication (see txt.REVISION_KEY for why)."""
        self._revision = (self._revision + 1) % _REVISION_MODULUS
        return self._revision

    def _info(
        self, stack: LinkStack, type_: str, label: str, props: dict[str, str], revision: int
    ) -> ServiceInfo:
        """A record to publish on ``stack``'s link, with that link's addresses only."""
        return ServiceInfo(
            type_,
            f"{label}.{type_}",
            port=self.port,
            properties=with_revision(props, revision),
            server=self._server,
            parsed_addresses=stack.link.addresses,
        )

    def _refresh_own(self) -> None:
        """Puts our desired records in the view, in place of any previous own records."""
        addresses = (
            *self.addresses,
            *(scoped(a, link.name) for link in self._links for a in link.ipv6),
        )
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

    # --- listeners ---------------------------------------------------------------------

    def _notify(self) -> None:
        for cb in list(self._listeners):
            try:
                cb()
            except Exception:
                log.exception("discovery listener %r failed", cb)


def _names(links: Sequence[Link]) -> str:
    return ", ".join(f"{link.name} ({' '.join(link.addresses)})" for link in links) or "none"
