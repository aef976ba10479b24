"""The authenticated channel over real TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bonjourgrid.control import (
    CONTROL,
    MAX_FRAME,
    AuthError,
    Channel,
    ChannelClosed,
    Ping,
    Pong,
    Registry,
    Release,
    Reserve,
    ReserveReply,
    connect,
    serve,
)
from bonjourgrid.control.auth import ClientHandshake, Sealer
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.gridkey import GridKey

from .test_auth import SameGridIdKey

LOOPBACK = "127.0.0.1"
KEY = GridKey(b"k" * 32)
OTHER = GridKey(b"o" * 32)
VOL = NodeKey(b"v" * 32)
COORD = NodeKey(b"c" * 32)
RESERVE = Reserve("app-1", COORD.node_id, "pc-9", 3, 30.0, "embedded")
Run = Callable[[Awaitable[Any]], Any]


@pytest.fixture
def caplog_control(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="bonjourgrid.control")
    return caplog


class Volunteer:
    """A server-side handler that records what reaches it and answers Reserve and Ping."""

    def __init__(self) -> None:
        self.calls = 0
        self.events: asyncio.Queue[object] = asyncio.Queue()

    async def __call__(self, channel: Channel) -> None:
        self.calls += 1
        await self.events.put(("peer", channel.peer_node, channel.peer_grid))
        try:
            while True:
                msg = await channel.recv()
                await self.events.put(msg)
                if isinstance(msg, Reserve):
                    await channel.send(ReserveReply(msg.app, True, "", 4))
                elif isinstance(msg, Ping):
                    await channel.send(
                        Pong(VOL.node_id, "pc-1", "idle", None, None, 4, 4, 4, (), ("embedded",))
                    )
        except ChannelClosed as e:
            await self.events.put(e)

    async def next(self) -> object:
        return await asyncio.wait_for(self.events.get(), 5)


async def start(
    handler: Callable[[Channel], Awaitable[None]], key: GridKey = KEY, **kw: Any
) -> tuple[asyncio.Server, int]:
    server = await serve(LOOPBACK, 0, key=key, node=VOL, on_channel=handler, **kw)
    return server, server.sockets[0].getsockname()[1]


async def dial(port: int, key: GridKey = KEY, **kw: Any) -> Channel:
    return await connect(LOOPBACK, port, key=key, node=COORD, timeout=5, **kw)


async def hung_up(reader: asyncio.StreamReader) -> bytes:
    """Wait until the server hangs up; what it sent first (a reset may swallow it)."""
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""


async def good_conversation(port: int, volunteer: Volunteer) -> None:
    async with await dial(port) as ch:
        assert await ch.request(RESERVE, timeout=5) == ReserveReply("app-1", True, "", 4)
    assert await volunteer.next() == ("peer", COORD.node_id, KEY.grid_id)
    assert await volunteer.next() == RESERVE
    assert isinstance(await volunteer.next(), ChannelClosed)


def test_peers_with_the_same_key_converse(run: Run) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            ch = await dial(port)
            assert (ch.peer_node, ch.peer_grid) == (VOL.node_id, KEY.grid_id)
            assert ch.peer_address == (LOOPBACK, port)
            assert await ch.request(RESERVE, timeout=5) == ReserveReply("app-1", True, "", 4)
            assert isinstance(await ch.request(Ping(), timeout=5), Pong)
            await ch.close()
            assert await volunteer.next() == ("peer", COORD.node_id, KEY.grid_id)
            assert await volunteer.next() == RESERVE
            assert await volunteer.next() == Ping()
            assert isinstance(await volunteer.next(), ChannelClosed)
            with pytest.raises(ChannelClosed):
                await ch.send(Ping())

    run(main())


def test_concurrent_senders_do_not_interleave_frames(run: Run) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            ch = await dial(port)
            big = 200_000  # several socket writes per frame
            msgs = [Release("a", i, "x" * big + str(i)) for i in range(20)]
            await asyncio.gather(*(ch.send(m) for m in msgs))
            assert await volunteer.next() == ("peer", COORD.node_id, KEY.grid_id)
            got = [await volunteer.next() for _ in msgs]
            assert sorted(got, key=lambda m: m.term) == msgs  # type: ignore[attr-defined]
            await ch.close()

    run(main())


def test_peer_with_a_different_key_is_refused_on_both_sides(
    run: Run, caplog_control: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            with pytest.raises(AuthError, match=f"is on grid {OTHER.grid_id}"):
                await dial(port, key=OTHER)
            await asyncio.sleep(0.05)
            assert volunteer.calls == 0
            await good_conversation(port, volunteer)

    run(main())
    assert (
        f"refused control connection from {LOOPBACK}:" in caplog_control.text
        and f"peer {COORD.node_id} is on grid {OTHER.grid_id}, we are on {KEY.grid_id}"
        in caplog_control.text
    )


def test_wrong_key_claiming_our_grid_id_is_refused_on_both_sides(
    run: Run, caplog_control: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            with pytest.raises(AuthError, match="failed to prove"):
                await dial(port, key=SameGridIdKey(b"o" * 32, KEY.grid_id))
            assert volunteer.calls == 0

    run(main())


def test_reserve_from_a_peer_without_the_key_never_reaches_the_handler(
    run: Run, caplog_control: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            liar = SameGridIdKey(b"o" * 32, KEY.grid_id)
            intruder = ClientHandshake(liar, NodeKey(b"i" * 32), b"i" * 32)
            hello = intruder.hello()
            reserve = Sealer(b"guessed key").seal(CONTROL.encode(RESERVE))
            for frame in (hello, b"BJGP" + b"\0" * 96, reserve):  # proofs it cannot compute
                writer.write(struct.pack(">I", len(frame)) + frame)
            await writer.drain()
            await hung_up(reader)
            writer.close()
            await asyncio.sleep(0.05)
            assert volunteer.calls == 0
            await good_conversation(port, volunteer)

    run(main())
    assert f"peer {NodeKey(b'i' * 32).node_id} failed to prove the grid key" in caplog_control.text


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.0\r\n\r\n",  # the length prefix reads as ~1.2 GB
        struct.pack(">I", 0xFFFFFFFF),
        struct.pack(">I", MAX_FRAME + 1),
        struct.pack(">I", 12) + b"not a hello!",
        struct.pack(">I", 0),
        b"\x00\x00",  # a partial prefix, then EOF
    ],
    ids=["http", "4GiB", "max+1", "garbage-hello", "empty-frame", "partial-prefix"],
)
def test_garbage_does_not_hurt_the_server(
    run: Run, caplog_control: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(garbage)
            await writer.drain()
            writer.write_eof()
            await hung_up(reader)
            writer.close()
            assert volunteer.calls == 0
            await good_conversation(port, volunteer)

    run(main())
    assert "refused control connection" in caplog_control.text or "closed during" in (
        caplog_control.text
    )
    assert "Traceback" not in caplog_control.text


def test_silent_peer_is_dropped_after_the_handshake_timeout(
    run: Run, caplog_control: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer, handshake_timeout=0.2)
        async with server:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            assert await hung_up(reader) == b""
            writer.close()
            await good_conversation(port, volunteer)

    run(main())
    assert "no handshake within 0.2 s" in caplog_control.text


def test_connect_times_out_against_a_silent_server(run: Run) -> None:
    async def main() -> None:
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(mute, LOOPBACK, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(asyncio.TimeoutError):
                await connect(LOOPBACK, port, key=KEY, node=COORD, timeout=0.2)

    run(main())


def test_handler_exceptions_are_logged_and_the_server_lives_on(
    run: Run, caplog_control: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        first = True

        async def flaky(channel: Channel) -> None:
            nonlocal first
            if first:
                first = False
                raise RuntimeError("handler bug")
            await volunteer(channel)

        server, port = await start(flaky)
        async with server:
            ch = await dial(port)
            with pytest.raises(ChannelClosed):
                await ch.recv()
            await good_conversation(port, volunteer)

    run(main())
    assert "handler bug" in caplog_control.text


def test_request_timeout_closes_the_channel(run: Run) -> None:
    async def main() -> None:
        async def deaf(channel: Channel) -> None:
            await channel.recv()
            await asyncio.sleep(10)

        server, port = await start(deaf)
        async with server:
            ch = await dial(port)
            with pytest.raises(asyncio.TimeoutError):
                await ch.request(Ping(), timeout=0.2)
            assert ch.closed
            with pytest.raises(ChannelClosed):
                await ch.recv()

    run(main())


# --- a man in the middle ---------------------------------------------------------------------


class RecordingProxy:
    """Forwards one TCP connection, recording client->server frames; can inject bytes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frames: list[bytes] = []
        self.to_server: asyncio.StreamWriter | None = None

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, LOOPBACK, 0)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(LOOPBACK, self.target_port)
        self.to_server = swriter

        async def client_to_server() -> None:
            try:
                while True:
                    head = await creader.readexactly(4)
                    frame = head + await creader.readexactly(struct.unpack(">I", head)[0])
                    self.frames.append(frame)
                    swriter.write(frame)
                    await swriter.drain()
            except (EOFError, OSError):
                pass
            finally:
                swriter.close()

        async def server_to_client() -> None:
            try:
                while data := await sreader.read(65536):
                    cwriter.write(data)
                    await cwriter.drain()
            except OSError:
                pass
            finally:
                cwriter.close()

        await asyncio.gather(client_to_server(), server_to_client())

    def inject(self, data: bytes) -> None:
        assert self.to_server is not None
        self.to_server.write(data)


@pytest.mark.parametrize(
    ("attack", "logged"),
    [("replay", "seq 0, expected 1"), ("tamper", "bad MAC"), ("huge", "limit")],
)
def test_frames_injected_by_a_man_in_the_middle_are_rejected(
    run: Run, caplog_control: pytest.LogCaptureFixture, attack: str, logged: str
) -> None:
    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        proxy = RecordingProxy(port)
        proxy_server = await proxy.start()
        async with server, proxy_server:
            ch = await dial(proxy_server.sockets[0].getsockname()[1])
            assert await ch.request(RESERVE, timeout=5) == ReserveReply("app-1", True, "", 4)
            assert await volunteer.next() == ("peer", COORD.node_id, KEY.grid_id)
            assert await volunteer.next() == RESERVE
            _hello, _proof, reserve = proxy.frames
            if attack == "replay":
                proxy.inject(reserve)
            elif attack == "tamper":
                forged = bytearray(reserve)
                forged[4:12] = struct.pack(">Q", 1)  # make the sequence number right
                proxy.inject(bytes(forged))
            else:
                proxy.inject(struct.pack(">I", MAX_FRAME + 1))
            closed = await volunteer.next()
            assert isinstance(closed, ChannelClosed), closed
            with pytest.raises(ChannelClosed):  # the server hung up on the client too
                await asyncio.wait_for(ch.recv(), 5)
            await good_conversation(port, volunteer)

    run(main())
    assert logged in caplog_control.text
    assert f"closing control channel with {COORD.node_id}" in caplog_control.text


def test_authentic_but_undecodable_message_closes_the_link_and_others_go_on(
    run: Run, caplog_control: pytest.LogCaptureFixture
) -> None:
    newer = Registry("control")
    for kind, cls in CONTROL.types().items():
        newer.register(kind)(cls)

    @newer.register(999)
    @dataclass(frozen=True)
    class FromTheFuture:
        x: int

    async def main() -> None:
        volunteer = Volunteer()
        server, port = await start(volunteer)
        async with server:
            ch = await dial(port, registry=newer)
            await ch.send(FromTheFuture(1))
            with pytest.raises(ChannelClosed):
                await ch.request(RESERVE, timeout=5)
            assert await volunteer.next() == ("peer", COORD.node_id, KEY.grid_id)
            assert isinstance(await volunteer.next(), ChannelClosed)  # RESERVE never handled
            await ch.close()
            await good_conversation(port, volunteer)

    run(main())
    assert "refused an invalid message" in caplog_control.text
    assert "unknown control message kind 999" in caplog_control.text
