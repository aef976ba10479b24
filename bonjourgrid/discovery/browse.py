"""``GridBrowser``: the browsing half of ``Discovery`` (service.py), which learns the grid's
records from every link's mDNS stack and keeps them in the view.

Kept apart from service.py because it is the other direction: service.py publishes the desired
state and follows the links; this file only listens, and owns the tasks that listening starts.

One browser covers the three types. Added/Updated starts an owned resolve task (answered from
cache as a rule: replies carry SRV, TXT and A together); Removed drops the record. Records with
another grid id are ignored; malformed TXT is dropped and logged once. Our own records come
from the desired state, not from the network (``own_names``, kept by ``Discovery``, are not
browsed). After a restart on new links, records only the old stacks saw leave the view within
``RESTART_SETTLE``.

Threading: every method runs in the asyncio loop that called ``Discovery.start()``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from .link_stack import LinkStack, learned_addresses
from .names import ALL_TYPES, COORD_TYPE, IDLE_TYPE, instance_of
from .txt import TxtError, decode_coord, decode_node
from .view import CoordinatorRecord, Machine, Record, View

log = logging.getLogger("bonjourgrid.discovery.service")
"""Named as before the split from service.py, so log lines keep the name operators know."""

RESOLVE_TIMEOUT_MS = 1000
"""How long to wait for SRV/TXT/A not already in the cache. Announcements and answers carry all
of them, so a resolve is normally instant; one unanswered query is retried within this time."""
RESTART_SETTLE = 3.0
"""After a restart on new addresses, how long records seen only by the old stack stay listed.
A fresh browse resolves 32 services in ~0.09 s (DESIGN.md); this leaves a wide margin."""
_MAX_REJECTED_MEMORY = 1024
"""Bound on remembered malformed records (logged once each), so a noisy peer cannot grow it."""


class GridBrowser:
    """Browses this grid's records on the stacks it is given into ``view``. See the module
    docstring. ``own_names`` (lower-case instance names) is ``Discovery``'s live set of our own
    records: read here, never changed; ``notify`` is called after any change of the view."""

    def __init__(
        self, *, grid_id: str, view: View, own_names: set[str], notify: Callable[[], None]
    ) -> None:
        self.grid_id = grid_id
        self._view = view
        self._own_names = own_names
        self._notify = notify
        # (link, name) the browser of that link reported Added and not Removed
        self._present: set[tuple[str, str]] = set()
        self._rejected: set[tuple[str, bytes]] = set()
        # Tasks we own.
        self._resolving: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._stale_task: asyncio.Task[None] | None = None

    def start(self, stacks: Iterable[LinkStack]) -> None:
        """Starts a browser on each of ``stacks`` (running ones); a new generation of the
        view, whose records from an earlier one leave it after ``RESTART_SETTLE``."""
        loop = asyncio.get_running_loop()
        self._view.generation += 1
        if self._view.generation > 1:
            self._stale_task = loop.create_task(self._drop_stale(self._view.generation))
        for stack in stacks:
            assert stack.aiozc is not None
            stack.browser = AsyncServiceBrowser(
                stack.aiozc.zeroconf,
                list(ALL_TYPES),
                handlers=[functools.partial(self._on_state_change, stack)],
            )

    def stop(self) -> None:
        """Cancels our tasks and forgets what the browsers reported (the stacks, closed by
        ``Discovery``, take their browsers with them)."""
        for task in self._resolving.values():
            task.cancel()
        if self._stale_task is not None:
            self._stale_task.cancel()
        self._resolving.clear()
        self._present.clear()

    async def _drop_stale(self, generation: int) -> None:
        await asyncio.sleep(RESTART_SETTLE)
        if self._view.drop_older_than(generation, keep=self._own_names):
            self._notify()

    def _on_state_change(
        self,
        stack: LinkStack,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        key = name.lower()
        if key in self._own_names:
            return
        link = stack.link.name
        where = (link, key)
        if state_change is ServiceStateChange.Updated and where not in self._present:
            # zeroconf reports an address change to every service of that host still in its
            # cache, including one just withdrawn (its records linger 1 s after a goodbye).
            return
        previous = self._resolving.pop(where, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            self._present.discard(where)
            if self._view.drop(key, link):
                self._notify()
            return
        self._present.add(where)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._resolve(stack, zeroconf, service_type, name))
        self._resolving[where] = task
        task.add_done_callback(lambda t: self._forget_resolve(where, t))

    def _forget_resolve(self, where: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._resolving.get(where) is task:
            del self._resolving[where]
        if not task.cancelled() and task.exception() is not None:
            log.error("resolving %s on %s failed", where[1], where[0], exc_info=task.exception())

    async def _resolve(self, stack: LinkStack, zc: Zeroconf, type_: str, name: str) -> None:
        info = AsyncServiceInfo(type_, name)
        if not await info.async_request(zc, RESOLVE_TIMEOUT_MS):
            log.debug("%s did not resolve on %s", name, stack.link.name)
            return
        record = self._record_of(type_, name, info, stack)
        link = stack.link.name
        changed = self._view.put(name, record, link) if record else self._view.drop(name, link)
        if changed:
            self._notify()

    def _record_of(
        self, type_: str, name: str, info: AsyncServiceInfo, stack: LinkStack
    ) -> Record | None:
        """The view's record for a service resolved on ``stack``'s link, or None (another
        grid, or malformed). Its addresses are scoped to that link (service.py's module doc)."""
        addresses = learned_addresses(
            info.parsed_addresses(IPVersion.V4Only),
            info.parsed_scoped_addresses(IPVersion.V6Only),
            stack.link,
            ipv4_scoped=stack.bound,
        )
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
