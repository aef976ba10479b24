"""The coordinator's link to one recruited worker: heartbeats, loss detection, replies.

Threading contract: everything runs in the daemon's event loop. ``on_message`` is called for
every message that is not a reply someone awaits with ``expect``; ``on_lost`` is called once,
when the channel closes or the worker has been silent for ``suspect_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bonjourgrid.ce_backends.base import WorkerHandle
from bonjourgrid.config import Config
from bonjourgrid.control.channel import Channel, ChannelClosed
from bonjourgrid.control.messages import Heartbeat
from bonjourgrid.coordinator.matchmaking import Offer

log = logging.getLogger(__name__)


class WorkerLink(WorkerHandle):
    def __init__(
        self,
        channel: Channel,
        *,
        node: str,
        host: str,
        slots: int,
        app: str,
        term: int,
        config: Config,
        on_message: Callable[[WorkerLink, object], Awaitable[None]],
        on_lost: Callable[[WorkerLink, str], Awaitable[None]],
    ) -> None:
        self.channel = channel
        self.node = node
        self.host = host
        self.slots = slots
        self.app = app
        self.term = term
        self.config = config
        self.used = 0
        """CPUs' worth of tasks this coordinator has running there."""
        self.full = False
        """The worker refused a task for want of a free slot (its slots hold work this
        coordinator does not know of): nothing is placed here until it next sends a result
        that is not a refusal (a worker refusing everything gets no more of the app's tasks)."""
        self.offer: Offer | None = None
        """What the volunteer advertised when it was recruited (for matchmaking)."""
        self.ready = False
        """True once the backend has prepared the worker (app staged)."""
        self.last_seen = time.monotonic()
        self._on_message = on_message
        self._on_lost = on_lost
        self._waiters: dict[type, asyncio.Future[object]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.peer_closed = asyncio.Event()
        """Set when the worker's side of the channel is gone (read EOF or failure)."""

    @property
    def free(self) -> int:
        return 0 if self.full else self.slots - self.used

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read(), name=f"link {self.host} read"),
            asyncio.create_task(self._beat(), name=f"link {self.host} heartbeat"),
        ]

    async def send(self, msg: object) -> None:
        await self.channel.send(msg)

    async def expect(self, kind: type, timeout: float) -> object:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiters[kind] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(kind, None)

    async def _read(self) -> None:
        reason = "channel closed"
        try:
            while True:
                msg = await self.channel.recv()
                self.last_seen = time.monotonic()
                waiter = self._waiters.get(type(msg))
                if waiter is not None and not waiter.done():
                    waiter.set_result(msg)
                    continue
                await self._on_message(self, msg)
        except ChannelClosed as e:
            reason = f"channel closed ({e})" if str(e) else reason
        except Exception as e:
            log.exception("link to %s failed", self.host)
            reason = f"link error: {e}"
        self.peer_closed.set()
        await self._lost(reason)

    async def _beat(self) -> None:
        cfg = self.config
        lease = cfg.reserve_lease
        while True:
            await asyncio.sleep(cfg.heartbeat_interval)
            if time.monotonic() - self.last_seen > cfg.suspect_after:
                await self._lost(f"silent for more than {cfg.suspect_after:g} s")
                return
            try:
                await self.channel.send(Heartbeat(self.app, self.term, lease))
            except Exception as e:
                await self._lost(f"heartbeat failed: {e}")
                return

    async def _lost(self, reason: str) -> None:
        if self._closed:
            return
        await self.close()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ChannelClosed(reason))
        await self._on_lost(self, reason)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        with contextlib.suppress(Exception):
            await self.channel.close()

    @property
    def closed(self) -> bool:
        return self._closed
