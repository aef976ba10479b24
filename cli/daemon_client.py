"""Talk to this host's daemon over its local socket, or run a private one meanwhile.

DESIGN.md: one daemon per host owns zeroconf (a second mDNS stack on a host splits unicast
replies and makes browses slow and partial). A command finds the host's daemon by its socket;
where none runs, it starts a private daemon in-process (it does not volunteer) that serves the
same socket for the command's lifetime, so concurrent commands on the host share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bonjourgrid.control.local_channel import LocalChannel, open_local
from bonjourgrid.daemon.hostinfo import detect, load_node_key
from bonjourgrid.daemon.local_messages import LOCAL, Failure
from bonjourgrid.daemon.lock import DaemonRunning
from bonjourgrid.daemon.node import NodeDaemon

from .context import EXIT_GRID_FAILED, Abort, Ctx

_CONNECT_TIMEOUT = 2.0


class DaemonSession:
    def __init__(self, socket: Path, private: NodeDaemon | None) -> None:
        self.socket = socket
        self.private = private

    async def open(self) -> LocalChannel:
        return await open_local(str(self.socket), registry=LOCAL, timeout=_CONNECT_TIMEOUT)

    async def call(self, request: object, *, timeout: float = 30.0) -> object:
        ch = await self.open()
        try:
            reply = await ch.request(request, timeout=timeout)
        finally:
            await ch.close()
        if isinstance(reply, Failure):
            raise Abort(reply.message, reply.code)
        return reply


async def _socket_answers(path: Path) -> bool:
    try:
        ch = await open_local(str(path), registry=LOCAL, timeout=_CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return False
    await ch.close()
    return True


def daemon_answers(ctx: Ctx) -> bool:
    """Whether this host's daemon answers on its socket now (from outside an event loop)."""
    return asyncio.run(_socket_answers(ctx.paths.daemon_socket))


@contextlib.asynccontextmanager
async def daemon_session(
    ctx: Ctx,
    *,
    interfaces: Sequence[str] = (),
    mdns: bool = True,
    static_peers: Sequence[tuple[str, int]] = (),
) -> AsyncIterator[DaemonSession]:
    paths = ctx.paths
    if await _socket_answers(paths.daemon_socket):
        yield DaemonSession(paths.daemon_socket, None)
        return
    key = ctx.key()
    paths.ensure()
    host = detect(load_node_key(paths.state_dir))
    daemon = NodeDaemon(
        paths=paths,
        config=ctx.config,
        key=key,
        host=host,
        volunteer=False,
        mdns=mdns,
        interfaces=interfaces,
        listen="127.0.0.1" if not mdns else "::",
        static_peers=static_peers,
    )
    try:
        await daemon.start()
    except DaemonRunning:
        # Another command's private daemon is starting up: use it once its socket answers.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if await _socket_answers(paths.daemon_socket):
                yield DaemonSession(paths.daemon_socket, None)
                return
            await asyncio.sleep(0.1)
        raise Abort(
            "another bjgrid daemon holds this host's lock but does not answer", EXIT_GRID_FAILED
        ) from None
    except OSError as e:
        raise Abort(f"cannot start a bjgrid daemon: {e}", EXIT_GRID_FAILED) from None
    try:
        yield DaemonSession(paths.daemon_socket, daemon)
    finally:
        await daemon.stop()
