"""The authenticated TCP channel between daemons: ``connect`` and ``serve`` run the handshake
(control/auth.py) over frames, then hand over a :class:`Channel` whose every frame is sealed.

The channel contract (send/recv/request/close) is control/frame_channel.py's; on this channel a
message naming a sender other than the node the handshake proved also closes it
(control/sender_claims.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence

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
    HandshakeError,
    ServerHandshake,
    Session,
    refusal,
)
from bonjourgrid.control.codec import Registry
from bonjourgrid.control.dial import PREFERENCES, listen_socket, open_connection, unmapped
from bonjourgrid.control.frame_channel import FrameChannel
from bonjourgrid.control.framing import FrameReader, FrameTooLarge, write_frame
from bonjourgrid.control.messages import CONTROL
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.control.sender_claims import false_claim
from bonjourgrid.gridkey import GridKey

log = logging.getLogger("bonjourgrid.control")


class AuthError(Exception):
    """The peer could not be authenticated (wrong grid, key, version or identity, bad
    handshake). ``reason`` as in ``HandshakeError`` (``broken`` if the peer hung up)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def _peer_address(writer: asyncio.StreamWriter) -> tuple[str, int]:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return unmapped(str(peer[0])), int(peer[1])
    return ("?", 0)


class Channel(FrameChannel):
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
