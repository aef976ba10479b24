from __future__ import annotations

import pytest

from bonjourgrid.control.auth import (
    MAC_BYTES,
    PROTOCOL_VERSION,
    ClientHandshake,
    FrameAuthError,
    HandshakeError,
    ServerHandshake,
    Session,
    refusal,
)
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.gridkey import GridKey

KEY = GridKey(b"k" * 32)
OTHER = GridKey(b"o" * 32)
CLIENT = NodeKey(b"C" * 32)
SERVER = NodeKey(b"S" * 32)
INTRUDER = NodeKey(b"I" * 32)


class SameGridIdKey(GridKey):
    """A wrong key that claims another grid's id: only the proofs can tell it apart."""

    def __init__(self, secret: bytes, grid_id: str) -> None:
        super().__init__(secret)
        object.__setattr__(self, "_claimed", grid_id)

    @property
    def grid_id(self) -> str:
        return str(self.__dict__["_claimed"])


def handshake(
    client_key: GridKey = KEY, server_key: GridKey = KEY, *, cn: bytes = b"c" * 32
) -> tuple[Session, Session]:
    client = ClientHandshake(client_key, CLIENT, cn)
    server = ServerHandshake(server_key, SERVER, b"s" * 32)
    proof = client.on_server_hello(server.on_client_hello(client.hello()))
    welcome, server_session = server.on_proof(proof)
    client_session = client.on_welcome(welcome)
    assert client.peer is not None and server.peer is not None
    assert client.peer.node_id == SERVER.node_id
    assert server.peer.node_id == CLIENT.node_id
    return client_session, server_session


def test_both_sides_agree_and_talk_both_ways() -> None:
    c, s = handshake()
    for i in range(3):
        assert s.opener.open(c.sealer.seal(b"to server %d" % i)) == b"to server %d" % i
        assert c.opener.open(s.sealer.seal(b"to client %d" % i)) == b"to client %d" % i


def test_directions_use_different_keys() -> None:
    c, _ = handshake()
    frame = c.sealer.seal(b"hello")
    with pytest.raises(FrameAuthError, match="bad MAC"):
        c.opener.open(frame)  # reflected back at its sender


def test_sessions_differ_per_connection() -> None:
    c1, _ = handshake(cn=b"1" * 32)
    _, s2 = handshake(cn=b"2" * 32)
    with pytest.raises(FrameAuthError, match="bad MAC"):
        s2.opener.open(c1.sealer.seal(b"from another session"))


def test_wrong_key_with_its_own_grid_id_is_refused_by_the_server() -> None:
    client = ClientHandshake(OTHER, INTRUDER, b"c" * 32)
    server = ServerHandshake(KEY, SERVER, b"s" * 32)
    with pytest.raises(HandshakeError, match=f"is on grid {OTHER.grid_id}, we are on") as e:
        server.on_client_hello(client.hello())
    assert e.value.reason == "grid"


def test_wrong_key_claiming_our_grid_id_fails_the_client_proof() -> None:
    liar = SameGridIdKey(b"o" * 32, KEY.grid_id)
    client = ClientHandshake(liar, INTRUDER, b"c" * 32)
    server = ServerHandshake(KEY, SERVER, b"s" * 32)
    server_hello = server.on_client_hello(client.hello())
    # The client cannot check the server's proof either, so an honest client stops here...
    with pytest.raises(HandshakeError) as e:
        client.on_server_hello(server_hello)
    assert e.value.reason == "proof"
    # ...and a forged proof gets the intruder nowhere.
    with pytest.raises(HandshakeError) as e:
        server.on_proof(b"BJGP" + b"\0" * (MAC_BYTES + 64))
    assert e.value.reason == "proof"


def test_wrong_key_server_claiming_our_grid_id_is_refused_by_the_client() -> None:
    client = ClientHandshake(KEY, CLIENT, b"c" * 32)
    server = ServerHandshake(SameGridIdKey(b"o" * 32, KEY.grid_id), INTRUDER, b"s" * 32)
    with pytest.raises(HandshakeError, match="failed to prove") as e:
        client.on_server_hello(server.on_client_hello(client.hello()))
    assert e.value.reason == "proof"


def test_proof_from_another_connection_is_refused() -> None:
    # A recorded proof is bound to its transcript (ephemeral keys): it opens no new connection.
    old_client = ClientHandshake(KEY, CLIENT, b"1" * 32)
    old_server = ServerHandshake(KEY, SERVER, b"s" * 32)
    old_proof = old_client.on_server_hello(old_server.on_client_hello(old_client.hello()))
    new_server = ServerHandshake(KEY, SERVER, b"t" * 32)
    new_server.on_client_hello(old_client.hello())  # same client hello replayed
    with pytest.raises(HandshakeError, match="failed to prove"):
        new_server.on_proof(old_proof)


def test_newer_protocol_version_is_refused_naming_both() -> None:
    hello = bytearray(ClientHandshake(KEY, CLIENT, b"c" * 32).hello())
    hello[4:6] = (PROTOCOL_VERSION + 1).to_bytes(2, "big")
    with pytest.raises(HandshakeError, match="upgrade this bjgrid") as e:
        ServerHandshake(KEY, SERVER, b"s" * 32).on_client_hello(bytes(hello))
    assert e.value.reason == "version"


@pytest.mark.parametrize(
    "data",
    [b"", b"GET / HTTP/1.1\r\n", b"BJGH", b"BJGH\x00\x02\x08abc", b"BJGH\x00\x02" + b"\xff" * 80],
)
def test_malformed_hello_is_refused(data: bytes) -> None:
    with pytest.raises(HandshakeError) as e:
        ServerHandshake(KEY, SERVER, b"s" * 32).on_client_hello(data)
    assert e.value.reason == "malformed"


def test_refusal_reaches_the_client_as_its_reason() -> None:
    client = ClientHandshake(KEY, CLIENT, b"c" * 32)
    with pytest.raises(HandshakeError, match="refused by peer: go away") as e:
        client.on_server_hello(refusal("go away"))
    assert e.value.reason == "refused"


def test_tampered_frame_is_rejected() -> None:
    c, s = handshake()
    frame = bytearray(c.sealer.seal(b"reserve me"))
    frame[10] ^= 1
    with pytest.raises(FrameAuthError, match="bad MAC"):
        s.opener.open(bytes(frame))


def test_tampered_mac_is_rejected() -> None:
    c, s = handshake()
    frame = bytearray(c.sealer.seal(b"reserve me"))
    frame[-1] ^= 1
    with pytest.raises(FrameAuthError, match="bad MAC"):
        s.opener.open(bytes(frame))


def test_replayed_frame_is_rejected() -> None:
    c, s = handshake()
    frame = c.sealer.seal(b"reserve me")
    assert s.opener.open(frame) == b"reserve me"
    with pytest.raises(FrameAuthError, match="seq 0, expected 1"):
        s.opener.open(frame)


def test_reordered_frames_are_rejected() -> None:
    c, s = handshake()
    first, second = c.sealer.seal(b"1"), c.sealer.seal(b"2")
    with pytest.raises(FrameAuthError, match="seq 1, expected 0"):
        s.opener.open(second)
    with pytest.raises(FrameAuthError):  # and the opener stays dead afterwards
        s.opener.open(first)


def test_dropped_frame_is_detected() -> None:
    c, s = handshake()
    assert s.opener.open(c.sealer.seal(b"1")) == b"1"
    c.sealer.seal(b"2")  # lost on the way
    with pytest.raises(FrameAuthError, match="seq 2, expected 1"):
        s.opener.open(c.sealer.seal(b"3"))


def test_truncated_frame_is_rejected() -> None:
    c, s = handshake()
    with pytest.raises(FrameAuthError, match="too short"):
        s.opener.open(c.sealer.seal(b"")[:-1])
