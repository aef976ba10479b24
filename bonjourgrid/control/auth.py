"""Mutual authentication with the grid key, and per-frame MACs with sequence numbers. Pure.

Theory of operation (full wire details in docs/protocol.md):

1. client -> server  ``HELLO``: version, grid id, client node id, client nonce (clear).
2. server -> client  ``SERVER_HELLO``: version, grid id, server node id, server nonce, and
   ``HMAC(key, "srv" || transcript)``; or ``REFUSAL`` (a reason) for a wrong grid or version.
3. client -> server  ``PROOF``: ``HMAC(key, "cli" || transcript)`` once the server's proof holds.
4. server -> client  ``WELCOME``: ``HMAC(key, "acc" || transcript)``; or ``REFUSAL``.

The transcript binds the protocol version, the grid id, both node ids and both nonces, so a
proof is good for one connection only. Two directional keys are then derived from the key and
the transcript (HKDF-style: extract then expand with HMAC-SHA256). Each later frame body is
``seq (u64) || payload || HMAC-SHA256(direction key, seq || payload)``; the receiver wants
``seq`` to be exactly 0, 1, 2, ... so replayed, reordered, dropped or tampered frames fail.
Nonces are passed in (the channel draws them from ``secrets``), so this module is deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from bonjourgrid.gridkey import GridKey

PROTOCOL_VERSION = 1
NONCE_BYTES = 32
MAC_BYTES = 32
MAX_HANDSHAKE_FRAME = 1024
"""Handshake messages are tiny; anything longer before authentication is refused unread."""

FRAME_OVERHEAD = 8 + MAC_BYTES

_HELLO = b"BJGH"
_SERVER_HELLO = b"BJGS"
_PROOF = b"BJGP"
_WELCOME = b"BJGW"
_REFUSAL = b"BJGX"
_VERSION = struct.Struct(">H")
_SEQ = struct.Struct(">Q")
_MAX_REFUSAL_TEXT = 300
_MAX_SEQ = 2**64 - 1


class HandshakeError(Exception):
    """The handshake failed. ``reason``: malformed | version | grid | proof | refused."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class FrameAuthError(Exception):
    """A frame failed authentication (bad MAC, or out of sequence); the channel is dead."""


@dataclass(frozen=True)
class Hello:
    version: int
    grid_id: str
    node_id: str
    nonce: bytes


# --- handshake message encoding --------------------------------------------------------------


def _short(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{text[:40]!r}...: longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _encode_hello(magic: bytes, hello: Hello, proof: bytes = b"") -> bytes:
    return b"".join(
        [
            magic,
            _VERSION.pack(hello.version),
            _short(hello.grid_id),
            _short(hello.node_id),
            hello.nonce,
            proof,
        ]
    )


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise HandshakeError("truncated handshake message", reason="malformed")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def short_text(self) -> str:
        raw = self.take(self.take(1)[0])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HandshakeError("handshake text is not UTF-8", reason="malformed") from None

    def end(self) -> None:
        if self._pos != len(self._data):
            raise HandshakeError("trailing bytes in handshake message", reason="malformed")


def _check_refusal(data: bytes) -> None:
    if data.startswith(_REFUSAL):
        text = data[len(_REFUSAL) :][:_MAX_REFUSAL_TEXT].decode("utf-8", "replace")
        raise HandshakeError(f"refused by peer: {text}", reason="refused")


def _parse_hello(magic: bytes, data: bytes, proof_len: int) -> tuple[Hello, bytes]:
    r = _Reader(data)
    if r.take(len(magic)) != magic:
        raise HandshakeError("not a bjgrid control handshake", reason="malformed")
    (version,) = _VERSION.unpack(r.take(_VERSION.size))
    if version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}",
            reason="version",
        )
    grid_id, node_id = r.short_text(), r.short_text()
    nonce = r.take(NONCE_BYTES)
    proof = r.take(proof_len)
    r.end()
    return Hello(version, grid_id, node_id, nonce), proof


def refusal(text: str) -> bytes:
    """A REFUSAL handshake message (unauthenticated: a diagnostic for the peer, nothing more)."""
    return _REFUSAL + text.encode("utf-8")[:_MAX_REFUSAL_TEXT]


# --- transcript, proofs and keys -----------------------------------------------------------


def _transcript(client: Hello, server: Hello) -> bytes:
    parts = [
        b"bjgrid control handshake",
        _VERSION.pack(client.version),
        client.grid_id.encode(),
        client.node_id.encode(),
        server.node_id.encode(),
        client.nonce,
        server.nonce,
    ]
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def _mac(key: bytes, label: bytes, data: bytes) -> bytes:
    return hmac.new(key, label + b"\0" + data, hashlib.sha256).digest()


def _session(key: GridKey, transcript: bytes, *, client: bool) -> Session:
    prk = _mac(key.secret, b"bjgrid session", transcript)
    c2s = _mac(prk, b"client to server", b"\x01")
    s2c = _mac(prk, b"server to client", b"\x01")
    send, recv = (c2s, s2c) if client else (s2c, c2s)
    return Session(Sealer(send), Opener(recv))


class ClientHandshake:
    """The connecting side: ``hello()``, ``on_server_hello()`` -> proof, ``on_welcome()``."""

    def __init__(self, key: GridKey, node_id: str, nonce: bytes) -> None:
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
        self._key = key
        self._hello = Hello(PROTOCOL_VERSION, key.grid_id, node_id, nonce)
        self._transcript: bytes | None = None
        self.peer: Hello | None = None

    def hello(self) -> bytes:
        return _encode_hello(_HELLO, self._hello)

    def on_server_hello(self, data: bytes) -> bytes:
        """Check the server's hello and proof; return our PROOF message."""
        _check_refusal(data)
        server, proof = _parse_hello(_SERVER_HELLO, data, MAC_BYTES)
        if server.grid_id != self._key.grid_id:
            raise HandshakeError(
                f"peer {server.node_id!r} is on grid {server.grid_id}, "
                f"we are on {self._key.grid_id}",
                reason="grid",
            )
        transcript = _transcript(self._hello, server)
        if not hmac.compare_digest(proof, _mac(self._key.secret, b"srv", transcript)):
            raise HandshakeError(
                f"peer {server.node_id!r} failed to prove the grid key", reason="proof"
            )
        self.peer, self._transcript = server, transcript
        return _PROOF + _mac(self._key.secret, b"cli", transcript)

    def on_welcome(self, data: bytes) -> Session:
        """Check the server's acceptance; return the client's session."""
        if self._transcript is None:
            raise RuntimeError("on_welcome before on_server_hello")
        _check_refusal(data)
        expected = _WELCOME + _mac(self._key.secret, b"acc", self._transcript)
        if not hmac.compare_digest(data, expected):
            raise HandshakeError("bad WELCOME from peer", reason="proof")
        return _session(self._key, self._transcript, client=True)


class ServerHandshake:
    """The accepting side: ``on_client_hello()`` -> SERVER_HELLO, ``on_proof()``."""

    def __init__(self, key: GridKey, node_id: str, nonce: bytes) -> None:
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
        self._key = key
        self._hello = Hello(PROTOCOL_VERSION, key.grid_id, node_id, nonce)
        self._transcript: bytes | None = None
        self.peer: Hello | None = None

    def on_client_hello(self, data: bytes) -> bytes:
        """Check the client's hello; return our SERVER_HELLO (with our proof)."""
        client, _ = _parse_hello(_HELLO, data, 0)
        self.peer = client
        if client.grid_id != self._key.grid_id:
            raise HandshakeError(
                f"peer {client.node_id!r} is on grid {client.grid_id}, "
                f"we are on {self._key.grid_id}",
                reason="grid",
            )
        self._transcript = _transcript(client, self._hello)
        return _encode_hello(
            _SERVER_HELLO, self._hello, _mac(self._key.secret, b"srv", self._transcript)
        )

    def on_proof(self, data: bytes) -> tuple[bytes, Session]:
        """Check the client's proof; return our WELCOME and the server's session."""
        if self._transcript is None or self.peer is None:
            raise RuntimeError("on_proof before on_client_hello")
        expected = _PROOF + _mac(self._key.secret, b"cli", self._transcript)
        if not hmac.compare_digest(data, expected):
            raise HandshakeError(
                f"peer {self.peer.node_id!r} failed to prove the grid key (wrong key?)",
                reason="proof",
            )
        welcome = _WELCOME + _mac(self._key.secret, b"acc", self._transcript)
        return welcome, _session(self._key, self._transcript, client=False)


# --- per-frame MAC -------------------------------------------------------------------------


class Sealer:
    """Seals outgoing payloads: seq || payload || MAC, seq counting from 0."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.seq = 0

    def seal(self, payload: bytes) -> bytes:
        if self.seq > _MAX_SEQ:
            raise FrameAuthError("sequence numbers exhausted")
        head = _SEQ.pack(self.seq)
        mac = hmac.new(self._key, head, hashlib.sha256)
        mac.update(payload)
        self.seq += 1
        return b"".join([head, payload, mac.digest()])


class Opener:
    """Checks incoming frames: MAC first, then seq == expected. One failure kills it."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.expected = 0
        self._dead = False

    def open(self, frame: bytes) -> bytes:
        if self._dead:
            raise FrameAuthError("channel already failed authentication")
        self._dead = True  # until proven good
        if len(frame) < FRAME_OVERHEAD:
            raise FrameAuthError(f"frame of {len(frame)} bytes is too short")
        view = memoryview(frame)
        body = view[: len(frame) - MAC_BYTES]
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, view[len(frame) - MAC_BYTES :]):
            raise FrameAuthError("bad MAC (tampered or forged frame)")
        (seq,) = _SEQ.unpack_from(view)
        if seq != self.expected:
            raise FrameAuthError(
                f"frame seq {seq}, expected {self.expected} (replayed, reordered or dropped)"
            )
        self.expected += 1
        self._dead = False
        return bytes(body[_SEQ.size :])


@dataclass
class Session:
    """One side's keys after the handshake."""

    sealer: Sealer
    opener: Opener
