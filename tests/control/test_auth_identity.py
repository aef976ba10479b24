"""The handshake proves node ids (control protocol 2): forged ids, borrowed public keys, relays
by a grid-key holder, and peers of version 1 are all refused, each with its reason."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bonjourgrid.control import auth
from bonjourgrid.control.auth import (
    PROTOCOL_VERSION,
    ClientHandshake,
    FrameAuthError,
    HandshakeError,
    ServerHandshake,
    refusal,
)
from bonjourgrid.control.channel import AuthError, Channel, connect, serve
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.framing import FrameReader, write_frame
from bonjourgrid.control.messages import Pong, Reserve, ReserveReply, VoteRequest
from bonjourgrid.control.nodekey import NodeKey, node_fingerprint
from bonjourgrid.control.sender_claims import false_claim
from bonjourgrid.gridkey import GridKey

KEY = GridKey(b"k" * 32)
VICTIM = NodeKey(b"V" * 32)
ROGUE = NodeKey(b"R" * 32)
HONEST = NodeKey(b"H" * 32)
LOOPBACK = "127.0.0.1"
Run = Callable[[Awaitable[Any]], Any]


class BorrowedKey:
    """Shows the victim's public key (so the fingerprint matches) but signs with its own."""

    def __init__(self, shown: NodeKey, signer: NodeKey) -> None:
        self.node_id, self.public, self.sign = shown.node_id, shown.public, signer.sign


def _claiming(hello: bytes, claimed: str, actual: str) -> bytes:
    assert len(claimed) == len(actual) and hello.count(actual.encode()) == 1
    return hello.replace(actual.encode(), claimed.encode())


def test_node_id_is_the_fingerprint_of_the_node_key() -> None:
    assert VICTIM.node_id == node_fingerprint(VICTIM.public)
    assert len(VICTIM.node_id) == 20 and VICTIM.node_id != ROGUE.node_id
    assert NodeKey.loads(VICTIM.dumps()).node_id == VICTIM.node_id


def test_a_client_claiming_another_nodes_id_with_its_own_key_is_refused() -> None:
    hello = ClientHandshake(KEY, ROGUE, b"c" * 32).hello()
    forged = _claiming(hello, VICTIM.node_id, ROGUE.node_id)
    with pytest.raises(HandshakeError, match=f"claims node id {VICTIM.node_id}") as e:
        ServerHandshake(KEY, HONEST, b"s" * 32).on_client_hello(forged)
    assert e.value.reason == "identity"


def test_a_client_showing_another_nodes_public_key_cannot_sign_for_it() -> None:
    client = ClientHandshake(KEY, BorrowedKey(VICTIM, ROGUE), b"c" * 32)  # type: ignore[arg-type]
    server = ServerHandshake(KEY, HONEST, b"s" * 32)
    proof = client.on_server_hello(server.on_client_hello(client.hello()))
    with pytest.raises(HandshakeError, match="failed to prove its node key") as e:
        server.on_proof(proof)
    assert e.value.reason == "identity"


def test_a_server_claiming_another_nodes_id_is_refused_by_the_client() -> None:
    client = ClientHandshake(KEY, HONEST, b"c" * 32)
    server = ServerHandshake(KEY, BorrowedKey(VICTIM, ROGUE), b"s" * 32)  # type: ignore[arg-type]
    with pytest.raises(HandshakeError, match="failed to prove its node key") as e:
        client.on_server_hello(server.on_client_hello(client.hello()))
    assert e.value.reason == "identity"
    forged = _claiming(
        ServerHandshake(KEY, ROGUE, b"s" * 32).on_client_hello(client.hello()),
        VICTIM.node_id,
        ROGUE.node_id,
    )
    with pytest.raises(HandshakeError, match="fingerprint") as e:
        ClientHandshake(KEY, HONEST, b"d" * 32).on_server_hello(forged)
    assert e.value.reason == "identity"


def _relayed() -> tuple[auth.Session, auth.Session, bytes, bytes]:
    """An honest client's handshake relayed unchanged to an honest server: both sessions,
    the transcript every byte of which the relay saw, and the secret it never saw."""
    client = ClientHandshake(KEY, HONEST, b"c" * 32)
    server = ServerHandshake(KEY, VICTIM, b"s" * 32)
    proof = client.on_server_hello(server.on_client_hello(client.hello()))
    welcome, s = server.on_proof(proof)
    c = client.on_welcome(welcome)
    assert client.peer is not None and client.peer.node_id == VICTIM.node_id
    assert server.peer is not None
    transcript = auth._transcript(server.peer, client.peer)
    secret = auth._Ephemeral(b"c" * 32).shared(client.peer.ephemeral)
    return c, s, transcript, secret


def test_a_grid_key_holder_relaying_a_handshake_cannot_read_or_forge_its_frames() -> None:
    # Both ends complete and each sees the other's proven id (the client, which dialed the
    # rogue, sees an id it did not dial: connect(expect=...) refuses it). The rogue holds the
    # grid key and saw every byte, yet without an ephemeral secret it derives nothing that
    # opens or forges their frames.
    c, s, transcript, secret = _relayed()
    knows_all = auth._session(KEY, secret, transcript, client=True)
    assert s.opener.open(knows_all.sealer.seal(b"x")) == b"x"  # the secret is all it lacks
    rogue_eph = auth._Ephemeral(b"r" * 32)
    for guess in (b"\0" * 32, rogue_eph.shared(rogue_eph.public)):
        c, s, transcript, _ = _relayed()
        forged = auth._session(KEY, guess, transcript, client=True)
        with pytest.raises(FrameAuthError, match="bad MAC"):
            s.opener.open(forged.sealer.seal(b"Reserve, as the honest client"))
        spy = auth._session(KEY, guess, transcript, client=False)
        with pytest.raises(FrameAuthError, match="bad MAC"):
            spy.opener.open(c.sealer.seal(b"secret"))


def _v1_hello(node_id: str) -> bytes:
    """A HELLO as bjgrid 0.x (control protocol 1) sends it: no node key, a 32-byte nonce."""
    return b"".join(
        [b"BJGH", (1).to_bytes(2, "big"), auth._short(KEY.grid_id), auth._short(node_id)]
    ) + (b"n" * 32)


def test_a_version_1_hello_is_refused_with_a_reason_that_says_what_to_upgrade() -> None:
    with pytest.raises(HandshakeError) as e:
        ServerHandshake(KEY, HONEST, b"s" * 32).on_client_hello(_v1_hello("3fa9c2d1"))
    assert e.value.reason == "version"
    assert str(e.value) == (
        f"peer 3fa9c2d1 speaks control protocol 1, this bjgrid speaks {PROTOCOL_VERSION}: "
        "upgrade it"
    )


def test_a_version_1_servers_refusal_tells_the_client_to_upgrade_the_peer() -> None:
    # What bjgrid 0.x answers to our version-2 HELLO.
    old = refusal(f"peer speaks protocol version {PROTOCOL_VERSION}, we speak 1")
    with pytest.raises(HandshakeError, match="speaks control protocol 1, this bjgrid speaks 2: "
                       "upgrade it") as e:  # fmt: skip
        ClientHandshake(KEY, HONEST, b"c" * 32).on_server_hello(old)
    assert e.value.reason == "version"


def test_handshake_messages_fit_the_pre_authentication_frame_limit() -> None:
    long_grid = SameLengthGrid("g" * 255)
    client = ClientHandshake(long_grid, HONEST, b"c" * 32)
    server_hello = ServerHandshake(long_grid, VICTIM, b"s" * 32).on_client_hello(client.hello())
    assert len(server_hello) <= auth.MAX_HANDSHAKE_FRAME


class SameLengthGrid(GridKey):
    def __init__(self, grid_id: str) -> None:
        super().__init__(b"k" * 32)
        object.__setattr__(self, "_id", grid_id)

    @property
    def grid_id(self) -> str:
        return str(self.__dict__["_id"])


# --- claims in messages ------------------------------------------------------------------------


def test_a_message_naming_a_sender_must_name_the_proven_peer() -> None:
    reserve = Reserve("app-1", VICTIM.node_id, "pc-9", 3, 30.0, "embedded")
    assert false_claim(reserve, VICTIM.node_id) is None
    assert "Reserve.coordinator" in str(false_claim(reserve, ROGUE.node_id))
    vote = VoteRequest("app-1", 4, VICTIM.node_id, 10, 3)
    assert "VoteRequest.candidate" in str(false_claim(vote, ROGUE.node_id))
    pong = Pong(VICTIM.node_id, "pc", "idle", None, None, 1, 1, 1, (), ())
    assert "Pong.node" in str(false_claim(pong, ROGUE.node_id))
    assert false_claim(ReserveReply("app-1", True, "", 1), ROGUE.node_id) is None


def test_a_reserve_naming_another_coordinator_never_reaches_the_handler(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bonjourgrid.control")
    got: list[object] = []

    async def handler(ch: Channel) -> None:
        try:
            while True:
                got.append(await ch.recv())
        except ChannelClosed:
            pass

    async def main() -> None:
        server = await serve(LOOPBACK, 0, key=KEY, node=HONEST, on_channel=handler)
        port = server.sockets[0].getsockname()[1]
        async with server:
            ch = await connect(LOOPBACK, port, key=KEY, node=ROGUE, timeout=5)
            await ch.send(Reserve("app-1", VICTIM.node_id, "pc-9", 3, 30.0, "embedded"))
            with pytest.raises(ChannelClosed):
                await asyncio.wait_for(ch.recv(), 5)
            ch2 = await connect(LOOPBACK, port, key=KEY, node=ROGUE, timeout=5)
            await ch2.send(Reserve("app-1", ROGUE.node_id, "pc-9", 3, 30.0, "embedded"))
            await ch2.close()
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.02)

    run(main())
    assert [type(m) for m in got] == [Reserve]
    assert isinstance(got[0], Reserve) and got[0].coordinator == ROGUE.node_id
    assert f"Reserve.coordinator is {VICTIM.node_id!r}" in caplog.text


def test_connect_refuses_a_peer_that_proves_another_id_than_expected(run: Run) -> None:
    async def handler(ch: Channel) -> None:
        await ch.recv()

    async def main() -> str:
        server = await serve(LOOPBACK, 0, key=KEY, node=ROGUE, on_channel=handler)
        port = server.sockets[0].getsockname()[1]
        async with server:
            ok = await connect(
                LOOPBACK, port, key=KEY, node=HONEST, timeout=5, expect=ROGUE.node_id
            )
            await ok.close()
            with pytest.raises(AuthError) as e:
                await connect(
                    LOOPBACK, port, key=KEY, node=HONEST, timeout=5, expect=VICTIM.node_id
                )
            return e.value.reason

    assert run(main()) == "identity"


def test_a_version_1_server_is_reported_by_connect_with_its_version(run: Run) -> None:
    async def old_bjgrid(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await FrameReader(reader, max_size=1024).read()
        write_frame(writer, refusal(f"peer speaks protocol version {PROTOCOL_VERSION}, we speak 1"))
        await writer.drain()
        writer.close()

    async def main() -> AuthError:
        server = await asyncio.start_server(old_bjgrid, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(AuthError) as e:
                await connect(LOOPBACK, port, key=KEY, node=HONEST, timeout=5)
            return e.value

    err = run(main())
    assert err.reason == "version"
    assert "speaks control protocol 1, this bjgrid speaks 2: upgrade it" in str(err)
