"""Channels that carry registry messages: authenticated TCP between daemons, and a plain Unix
socket between the CLI and its local daemon.

Contract shared by both kinds: ``send`` may be called by several tasks at once (serialised by a
lock); ``recv`` returns the next valid message; an authentic frame whose payload does not decode
or whose ids fail the rules (control/message_checks.py) is logged and closes the channel,
as does, on an authenticated channel, a message naming a sender other than the node the
handshake proved (control/sender_claims.py); and ``recv`` raises :class:`ChannelClosed` at
end of stream or on any framing or authentication failure (the connection is then closed).
``close`` is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from bonjourgrid.control.admission import (
    MAX_HANDSHAKES,
    MAX_HANDSHAKES_PER_PEER,
    HandshakeGate,
    RateLimitedLog,
)
from bonjourgrid.control.auth import (
    EPHEMERAL_BYTES,
    MAX_HANDSHAKE_FRAME,
    ClientHandshake,
    FrameAuthError,
    HandshakeError,
    ServerHandshake,
    Session,
    refusal,
)
from bonjourgrid.control.codec import MessageError, Registry
from bonjourgrid.control.dial import PREFERENCES, listen_socket, open_connection, unmapped
from bonjourgrid.control.framing import MAX_FRAME, FrameReader, FrameTooLarge, write_frame
from bonjourgrid.control.messages import CONTROL
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.control.sender_claims import false_claim
from bonjourgrid.gridkey import GridKey

log = logging.getLogger("bonjourgrid.control")

_CLOSE_GRACE = 1.0
"""Seconds ``close`` waits for buffered bytes to flush before aborting the connection."""


class ChannelClosed(Exception):
    """The channel is closed: end of stream, a framing/authentication failure, or close()."""


class AuthError(Exception):
    """The peer could not be authenticated (wrong grid, key, version or identity, bad
    handshake). ``reason`` as in ``HandshakeError`` (``broken`` if the peer hung up)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class _FrameChannel:
    """Messages over frames; subclasses wrap payloads (MAC) or not."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, registry: Registry
    ) -> None:
        self._frames = FrameReader(reader, max_size=MAX_FRAME)
        self._writer = writer
        self._registry = registry
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._closed = False

    def _seal(self, payload: bytes) -> bytes:
        return payload

    def _open(self, frame: bytes) -> bytes:
        return frame

    def _refuse(self, msg: object) -> str | None:
        """Why an authentic, valid message must still end the conversation (None: it need
        not)."""
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, msg: object) -> None:
        """Send one message. MessageError if it cannot be encoded; ChannelClosed if closed."""
        payload = self._registry.encode(msg)
        async with self._send_lock:
            if self._closed:
                raise ChannelClosed(f"{self} is closed")
            try:
                write_frame(self._writer, self._seal(payload))
                await self._writer.drain()
            except (OSError, FrameAuthError, FrameTooLarge) as e:
                self._abort()  # the frame may be half-written or its seq used: the stream is lost
                raise ChannelClosed(f"{self}: send failed: {e}") from e

    async def recv(self) -> object:
        """The next message that decodes; ChannelClosed at EOF or on failure."""
        async with self._recv_lock:
            while True:
                if self._closed:
                    raise ChannelClosed(f"{self} is closed")
                try:
                    frame = await self._frames.read()
                except EOFError:
                    self._abort()
                    raise ChannelClosed(f"{self}: closed by peer") from None
                except (FrameTooLarge, OSError) as e:
                    log.warning("closing %s: %s", self, e)
                    self._abort()
                    raise ChannelClosed(f"{self}: {e}") from e
                try:
                    payload = self._open(frame)
                except FrameAuthError as e:
                    log.warning("closing %s: frame failed authentication: %s", self, e)
                    self._abort()
                    raise ChannelClosed(f"{self}: {e}") from e
                try:
                    msg = self._registry.decode(payload)
                except MessageError as e:
                    # An authentic peer that sends an invalid message (a bad id, a path, an
                    # unknown kind) is buggy or hostile: refuse it and end the conversation.
                    log.warning("refused an invalid message from %s, closing: %s", self, e)
                    self._abort()
                    raise ChannelClosed(f"{self}: invalid message: {e}") from e
                why = self._refuse(msg)
                if why is not None:
                    log.warning("refused a message from %s, closing: %s", self, why)
                    self._abort()
                    raise ChannelClosed(f"{self}: {why}")
                return msg

    async def request(self, msg: object, *, timeout: float) -> object:
        """Send ``msg`` and return the next message. On timeout the channel is closed (a late
        reply must not be taken for the answer to a later request) and TimeoutError raised."""
        try:
            return await asyncio.wait_for(self._send_recv(msg), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise

    async def _send_recv(self, msg: object) -> object:
        await self.send(msg)
        return await self.recv()

    def _abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection (flushing what was sent, for up to a second). Idempotent."""
        self._closed = True
        if not self._writer.is_closing():
            self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_GRACE)
        except asyncio.TimeoutError:
            self._writer.transport.abort()
        except Exception:  # the peer may have reset: closed is closed
            pass

    async def __aenter__(self) -> _FrameChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _peer_address(writer: asyncio.StreamWriter) -> tuple[str, int]:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return unmapped(str(peer[0])), int(peer[1])
    return ("?", 0)


class Channel(_FrameChannel):
    """An authenticated TCP channel to another daemon of the same grid. ``peer_node`` is
    proven (the peer showed the node key whose fingerprint it is and signed the handshake)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        registry: Registry,
        session: Session,
        *,
        peer_node: str,
        peer_grid: str,
    ) -> None:
        super().__init__(reader, writer, registry)
        self._session = session
        self.peer_node = peer_node
        self.peer_grid = peer_grid
        self.peer_address = _peer_address(writer)
        local = writer.get_extra_info("sockname")
        self.local_address = unmapped(str(local[0])) if isinstance(local, tuple) and local else ""
        """This end's IP address: the address the peer reached us at (a backend that must
        name this host to the peer, e.g. an HTCondor startd, uses it)."""

    def _seal(self, payload: bytes) -> bytes:
        return self._session.sealer.seal(payload)

    def _open(self, frame: bytes) -> bytes:
        return self._session.opener.open(frame)

    def _refuse(self, msg: object) -> str | None:
        return false_claim(msg, self.peer_node)

    def __str__(self) -> str:
        host, port = self.peer_address
        return f"control channel with {self.peer_node} at {host}:{port}"


async def connect(
    host: str,
    port: int,
    *,
    key: GridKey,
    node: NodeKey,
    timeout: float,
    registry: Registry = CONTROL,
    local_addr: str | None = None,
    expect: str | None = None,
    interface: str | None = None,
) -> Channel:
    """Open an authenticated channel as ``node``; AuthError, OSError or asyncio.TimeoutError
    on failure. ``timeout`` bounds the connection and the handshake together. ``expect``: the
    node id we mean to reach (from its mDNS record); a peer that proves another is refused
    (AuthError, reason ``identity``). ``host`` may be scoped (``fe80::1%eth0``,
    ``169.254.7.9%eth1``: control/dial.py), or ``interface`` names the link to leave on."""
    ch = await asyncio.wait_for(
        _connect(host, port, key, node, registry, local_addr, interface), timeout
    )
    if expect is not None and ch.peer_node != expect:
        ch._abort()
        raise AuthError(
            f"{host}:{port}: expected node {expect}, the peer proved it is {ch.peer_node}",
            reason="identity",
        )
    if expect is not None:
        PREFERENCES.worked(expect, host)
    return ch


async def _connect(
    host: str,
    port: int,
    key: GridKey,
    node: NodeKey,
    registry: Registry,
    local_addr: str | None,
    interface: str | None,
) -> Channel:
    if local_addr:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(local_addr, 0))
    else:
        reader, writer = await open_connection(host, port, interface=interface)
    try:
        frames = FrameReader(reader, max_size=MAX_HANDSHAKE_FRAME)
        hs = ClientHandshake(key, node, secrets.token_bytes(EPHEMERAL_BYTES))
        write_frame(writer, hs.hello())
        await writer.drain()
        write_frame(writer, hs.on_server_hello(await frames.read()))
        await writer.drain()
        session = hs.on_welcome(await frames.read())
    except HandshakeError as e:
        writer.transport.abort()
        log.debug("control handshake with %s:%d failed: %s", host, port, e)
        raise AuthError(f"{host}:{port}: {e}", reason=e.reason) from None
    except (EOFError, FrameTooLarge) as e:
        writer.transport.abort()
        raise AuthError(
            f"{host}:{port}: handshake broken off by peer ({e})", reason="broken"
        ) from None
    except BaseException:
        writer.transport.abort()
        raise
    assert hs.peer is not None
    return Channel(
        reader, writer, registry, session, peer_node=hs.peer.node_id, peer_grid=hs.peer.grid_id
    )


_RefusalLog = Callable[..., object]
"""``say(level, msg, *args)``: how the handshake reports refusals (rate-limited in serve)."""


async def _accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: GridKey,
    node: NodeKey,
    registry: Registry,
    say: _RefusalLog | None = None,
) -> Channel | None:
    """Server side of the handshake; None (logged, connection closed) if the peer fails it."""
    say = say or log.log
    host, port = _peer_address(writer)
    frames = FrameReader(reader, max_size=MAX_HANDSHAKE_FRAME)
    hs = ServerHandshake(key, node, secrets.token_bytes(EPHEMERAL_BYTES))
    try:
        write_frame(writer, hs.on_client_hello(await frames.read()))
        await writer.drain()
        welcome, session = hs.on_proof(await frames.read())
        write_frame(writer, welcome)
        await writer.drain()
    except HandshakeError as e:
        say(logging.WARNING, "refused control connection from %s:%d: %s", host, port, e)
        with contextlib.suppress(Exception):
            write_frame(writer, refusal(str(e)))
            await writer.drain()
        writer.transport.abort()
        return None
    except FrameTooLarge as e:
        say(
            logging.WARNING,
            "refused control connection from %s:%d: malformed handshake: %s",
            host,
            port,
            e,
        )
        writer.transport.abort()
        return None
    except (EOFError, OSError) as e:
        say(
            logging.INFO,
            "control connection from %s:%d closed during the handshake (%s)",
            host,
            port,
            e,
        )
        writer.transport.abort()
        return None
    assert hs.peer is not None
    return Channel(
        reader, writer, registry, session, peer_node=hs.peer.node_id, peer_grid=hs.peer.grid_id
    )


async def serve(
    host: str | Sequence[str] | None,
    port: int,
    *,
    key: GridKey,
    node: NodeKey,
    on_channel: Callable[[Channel], Awaitable[None]],
    handshake_timeout: float = 5.0,
    registry: Registry = CONTROL,
    max_handshakes: int = MAX_HANDSHAKES,
    max_handshakes_per_peer: int = MAX_HANDSHAKES_PER_PEER,
) -> asyncio.Server:
    """Listen for authenticated channels (port 0: ephemeral). Each authenticated peer gets
    ``on_channel(channel)`` in its own task; the channel is closed when the handler returns.
    Peers that fail the handshake are logged (rate-limited) and dropped; handler exceptions
    are logged. Unauthenticated connections are bounded (control/admission.py): at most
    ``max_handshakes_per_peer`` in handshake per IP address, ``max_handshakes`` in all, each
    for at most ``handshake_timeout`` seconds; excess ones are closed at once."""
    gate = HandshakeGate(overall=max_handshakes, per_peer=max_handshakes_per_peer)
    refusals = RateLimitedLog(log)
    loop = asyncio.get_running_loop()

    def say(level: int, msg: str, *args: object) -> None:
        refusals.log(loop.time(), level, msg, *args)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host_, port_ = _peer_address(writer)
        ticket, evicted = gate.admit(host_, writer.transport.abort)
        if ticket is None:
            say(
                logging.WARNING,
                "refused control connection from %s:%d: too many handshakes in progress "
                "(%d from that address, %d in all)",
                host_,
                port_,
                max_handshakes_per_peer,
                gate.in_progress,
            )
            writer.transport.abort()
            return
        if evicted is not None:
            say(
                logging.WARNING,
                "closed a pending control handshake from %s to make room for %s",
                evicted.peer,
                host_,
            )
        try:
            channel = await asyncio.wait_for(
                _accept(reader, writer, key, node, registry, say), handshake_timeout
            )
        except asyncio.TimeoutError:
            say(
                logging.WARNING,
                "refused control connection from %s:%d: no handshake within %.1f s",
                host_,
                port_,
                handshake_timeout,
            )
            writer.transport.abort()
            return
        except Exception:
            log.exception("control handshake with %s:%d crashed", host_, port_)
            writer.transport.abort()
            return
        finally:
            gate.release(ticket)
        if channel is None:
            return
        try:
            await on_channel(channel)
        except Exception:
            log.exception("control handler for %s failed", channel)
        finally:
            await channel.close()

    if isinstance(host, str) and (sock := listen_socket(host, port)) is not None:
        return await asyncio.start_server(handle, sock=sock)  # "::": both families, one port
    return await asyncio.start_server(handle, "0.0.0.0" if host == "::" else host, port)


# --- local (CLI <-> daemon) ----------------------------------------------------------------

_PEERCRED = struct.Struct("3i")


def _peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket; (-1, -1) if unknown."""
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return -1, -1
    pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, opt, _PEERCRED.size))
    return pid, uid


class LocalChannel(_FrameChannel):
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
