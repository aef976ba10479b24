"""The coordinator's link to one recruited worker: heartbeats, loss detection, replies,
and an outbox.

Threading contract: everything runs in the daemon's event loop. ``on_message`` is called for
every message that is not a reply someone awaits with ``expect``; ``on_lost`` is called once,
when the channel closes or the worker has been silent for ``suspect_after``. ``post`` queues a
message for the link's one sender task, so what the coordinator's shell posts (results'
acknowledgements, the journal stream) leaves in the order posted, without a task per message.
What the engine knows of the worker (slots in use, ready, its offer) is the engine's ledger's,
not the link's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bonjourgrid.ce_backends.base import WorkerHandle
from bonjourgrid.config import Config
from bonjourgrid.control.channel import Channel
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.messages import Heartbeat

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
        on_message: Callable[[WorkerLink, object], None],
        on_lost: Callable[[WorkerLink, str], None],
    ) -> None:
        self.channel = channel
        self.node = node
        self.host = host
        self.slots = slots
        self.app = app
        self.term = term
        self.config = config
        self.last_seen = time.monotonic()
        self._on_message = on_message
        self._on_lost = on_lost
        self._waiters: dict[type, asyncio.Future[object]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._closed = False
        self.peer_closed = asyncio.Event()
        """Set when the worker's side of the channel is gone (read EOF or failure)."""

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read(), name=f"link {self.host} read"),
            asyncio.create_task(self._beat(), name=f"link {self.host} heartbeat"),
            asyncio.create_task(self._send_posted(), name=f"link {self.host} send"),
        ]

    async def send(self, msg: object) -> None:
        await self.channel.send(msg)

    def post(self, msg: object) -> None:
        """Queue ``msg`` for the link's sender (in order; dropped once the link is closed)."""
        if not self._closed:
            self._outbox.put_nowait(msg)

    async def flush(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until everything posted so far has been sent."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._outbox.join(), timeout)

    async def _send_posted(self) -> None:
        while True:
            msg = await self._outbox.get()
            try:
                await self.channel.send(msg)
            except Exception as e:  # the reader sees the close: the link is lost
                log.info("link to %s: send failed: %s", self.host, e)
                await self.channel.close()
                return
            finally:
                self._outbox.task_done()

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
                self._on_message(self, msg)
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
        self._on_lost(self, reason)

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
