"""The plain channel between the CLI and its local daemon, over a Unix socket: no handshake,
seq or MAC, the kernel names the peer (SO_PEERCRED). The contract is control/frame_channel.py's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable

from bonjourgrid.control.codec import Registry
from bonjourgrid.control.frame_channel import FrameChannel

log = logging.getLogger("bonjourgrid.control")

_PEERCRED = struct.Struct("3i")


def _peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket; (-1, -1) if unknown."""
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return -1, -1
    pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, opt, _PEERCRED.size))
    return pid, uid


class LocalChannel(FrameChannel):
    """A plain (unauthenticated) channel over a Unix socket; the kernel names the peer."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, registry: Registry
    ) -> None:
        super().__init__(reader, writer, registry)
        self.peer_pid, self.peer_uid = _peer_credentials(writer)

    def __str__(self) -> str:
        return f"local channel with pid {self.peer_pid} (uid {self.peer_uid})"


async def open_local(path: str, *, registry: Registry, timeout: float) -> LocalChannel:
    """Connect to a local daemon's socket; OSError or asyncio.TimeoutError on failure."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    return LocalChannel(reader, writer, registry)


def _remove_stale_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket; not removing it")
    os.unlink(path)


async def serve_local(
    path: str,
    *,
    registry: Registry,
    on_channel: Callable[[LocalChannel], Awaitable[None]],
) -> asyncio.AbstractServer:
    """Listen on a Unix socket created with mode 0600 (a stale socket file is replaced; the
    daemon's lock guarantees no live daemon owns it). The channel closes when the handler
    returns; handler exceptions are logged."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            channel = LocalChannel(reader, writer, registry)
        except OSError:
            log.exception("cannot identify the local peer")
            writer.transport.abort()
            return
        try:
            await on_channel(channel)
        except Exception:
            log.exception("local handler for %s failed", channel)
        finally:
            await channel.close()

    _remove_stale_socket(path)
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handle, path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server
