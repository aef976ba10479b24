"""Mutual authentication: the grid key and each side's node key; per-frame MACs. Pure.

Theory of operation (version 2; full wire details in docs/protocol.md):

1. client -> server  ``HELLO``: version, grid id, client node id, client ephemeral X25519
   public key, client node public key (Ed25519), all in clear.
2. server -> client  ``SERVER_HELLO``: the same for the server, then
   ``HMAC(grid key, "srv" || transcript)`` and the server's node-key signature of
   ``"srv" || transcript``; or ``REFUSAL`` (a reason) for a wrong grid, version or id.
3. client -> server  ``PROOF``: ``HMAC(grid key, "cli" || transcript)`` and the client's
   node-key signature of ``"cli" || transcript``, once the server's proofs hold.
4. server -> client  ``WELCOME``: ``HMAC(grid key, "acc" || transcript)``; or ``REFUSAL``.

Each side checks that the fingerprint of the peer's node public key is the node id it
claims (``control/nodekey.py``) and that its signature holds, so ``peer.node_id`` is proven:
holding the grid key is not enough to speak as another node. The transcript binds the
version, the grid id, both node ids, both ephemeral keys and both node keys, so proofs are
good for one connection only.

The session keys come from the grid key, the X25519 shared secret of the two ephemeral keys
and the transcript (HKDF-style: extract then expand with HMAC-SHA256). The shared secret is
what stops a grid-key holder who relays a handshake between two honest nodes (each believing
it talks to the other) from reading or writing their frames. Each later frame body is
``seq (u64) || payload || HMAC-SHA256(direction key, seq || payload)``; the receiver wants
``seq`` to be exactly 0, 1, 2, ... so replayed, reordered, dropped or tampered frames fail.

Randomness is passed in (the channel draws each side's ephemeral secret from ``secrets``),
so this module is deterministic. A peer of another version is refused with a reason that
names both versions (``version_refusal``): it reaches the other side's log and ``bjgrid
status``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from bonjourgrid import curves
from bonjourgrid.control.nodekey import (
    PUBLIC_BYTES,
    SIGNATURE_BYTES,
    NodeKey,
    node_fingerprint,
    verify,
)
from bonjourgrid.gridkey import GridKey

PROTOCOL_VERSION = 2
"""2: node keys in the handshake and ephemeral X25519 session keys (1: grid key only)."""
EPHEMERAL_BYTES = 32
NONCE_BYTES = EPHEMERAL_BYTES
"""The ephemeral X25519 key is fresh per connection: it is also the handshake's nonce."""
MAC_BYTES = 32
MAX_HANDSHAKE_FRAME = 1024
"""Handshake messages are small (a SERVER_HELLO is at most ~750 bytes with the longest ids
and is ~250 in practice); anything longer before authentication is refused unread."""

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
_PROOFS = MAC_BYTES + SIGNATURE_BYTES
_VERSION_REFUSAL = re.compile(
    r"speaks (?:control )?protocol(?: version)? (\d+), (?:we speak|this bjgrid speaks) (\d+)"
)
"""How version 1 (``peer speaks protocol version 2, we speak 1``) and later versions
(``version_refusal``) word the refusal of our hello: the second number is the peer's."""


class HandshakeError(Exception):
    """The handshake failed. ``reason``: malformed | version | grid | identity | proof |
    refused."""

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
    ephemeral: bytes
    """The sender's ephemeral X25519 public key (fresh per connection: the nonce)."""
    node_public: bytes
    """The sender's Ed25519 node public key; its fingerprint must be ``node_id``."""


def version_refusal(peer: str, theirs: int, ours: int = PROTOCOL_VERSION) -> str:
    """The reason given to (and about) a peer of another protocol version (``peer``: its
    node id or address, "" if unknown)."""
    who = f"peer {peer}" if peer else "the peer"
    upgrade = "upgrade it" if theirs < ours else "upgrade this bjgrid"
    return f"{who} speaks control protocol {theirs}, this bjgrid speaks {ours}: {upgrade}"


# --- handshake message encoding --------------------------------------------------------------


def _short(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{text[:40]!r}...: longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _encode_hello(magic: bytes, hello: Hello, proofs: bytes = b"") -> bytes:
    return b"".join(
        [
            magic,
            _VERSION.pack(hello.version),
            _short(hello.grid_id),
            _short(hello.node_id),
            hello.ephemeral,
            hello.node_public,
            proofs,
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


def _printable(text: str) -> str:
    """An unauthenticated name, safe to quote in a log line or a status note."""
    return repr(text[:64]) if not text.isprintable() or not text else text[:64]


def _check_refusal(data: bytes) -> None:
    if data.startswith(_REFUSAL):
        text = data[len(_REFUSAL) :][:_MAX_REFUSAL_TEXT].decode("utf-8", "replace")
        other = _VERSION_REFUSAL.search(text)
        if other is not None and int(other.group(2)) != PROTOCOL_VERSION:
            raise HandshakeError(version_refusal("", int(other.group(2))), reason="version")
        raise HandshakeError(f"refused by peer: {text}", reason="refused")


def _parse_hello(magic: bytes, data: bytes, proofs_len: int) -> tuple[Hello, bytes]:
    r = _Reader(data)
    if r.take(len(magic)) != magic:
        raise HandshakeError("not a bjgrid control handshake", reason="malformed")
    (version,) = _VERSION.unpack(r.take(_VERSION.size))
    if version != PROTOCOL_VERSION:
        # Every version so far starts with the grid id and node id: name the peer if we can.
        try:
            _grid, who = r.short_text(), _printable(r.short_text())
        except HandshakeError:
            who = "?"
        raise HandshakeError(version_refusal(who, version), reason="version")
    grid_id, node_id = r.short_text(), r.short_text()
    ephemeral, node_public = r.take(EPHEMERAL_BYTES), r.take(PUBLIC_BYTES)
    proofs = r.take(proofs_len)
    r.end()
    hello = Hello(version, grid_id, node_id, ephemeral, node_public)
    if node_fingerprint(node_public) != node_id:
        raise HandshakeError(
            f"peer claims node id {_printable(node_id)} with a key whose fingerprint is "
            f"{node_fingerprint(node_public)}",
            reason="identity",
        )
    return hello, proofs


def refusal(text: str) -> bytes:
    """A REFUSAL handshake message (unauthenticated: a diagnostic for the peer, nothing more)."""
    return _REFUSAL + text.encode("utf-8")[:_MAX_REFUSAL_TEXT]


# --- transcript, proofs and keys -----------------------------------------------------------


def _transcript(client: Hello, server: Hello) -> bytes:
    parts = [
        b"bjgrid control handshake v2",
        _VERSION.pack(client.version),
        client.grid_id.encode(),
        client.node_id.encode(),
        server.node_id.encode(),
        client.ephemeral,
        server.ephemeral,
        client.node_public,
        server.node_public,
    ]
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def _mac(key: bytes, label: bytes, data: bytes) -> bytes:
    return hmac.new(key, label + b"\0" + data, hashlib.sha256).digest()


def _signed(label: bytes, transcript: bytes) -> bytes:
    return b"bjgrid node signature\0" + label + b"\0" + transcript


def _proofs(key: GridKey, node: NodeKey, label: bytes, transcript: bytes) -> bytes:
    """The grid-key MAC and the node-key signature of ``label || transcript``."""
    return _mac(key.secret, label, transcript) + node.sign(_signed(label, transcript))


def _check_proofs(
    key: GridKey, peer: Hello, label: bytes, transcript: bytes, proofs: bytes
) -> None:
    mac, sig = proofs[:MAC_BYTES], proofs[MAC_BYTES:]
    who = _printable(peer.node_id)
    if not hmac.compare_digest(mac, _mac(key.secret, label, transcript)):
        raise HandshakeError(
            f"peer {who} failed to prove the grid key (wrong key?)", reason="proof"
        )
    if not verify(peer.node_public, sig, _signed(label, transcript)):
        raise HandshakeError(f"peer {who} failed to prove its node key", reason="identity")


class _Ephemeral:
    def __init__(self, secret: bytes) -> None:
        if len(secret) != EPHEMERAL_BYTES:
            raise ValueError(f"the ephemeral secret must be {EPHEMERAL_BYTES} bytes")
        self._secret = secret
        self.public = curves.x25519_public(secret)

    def shared(self, peer_public: bytes) -> bytes:
        try:
            return curves.x25519_shared(self._secret, peer_public)
        except ValueError:  # a low-order point: the shared secret would be all zeros
            raise HandshakeError("unusable ephemeral key from peer", reason="malformed") from None


def _session(key: GridKey, shared: bytes, transcript: bytes, *, client: bool) -> Session:
    prk = _mac(key.secret, b"bjgrid session v2", shared + transcript)
    c2s = _mac(prk, b"client to server", b"\x01")
    s2c = _mac(prk, b"server to client", b"\x01")
    send, recv = (c2s, s2c) if client else (s2c, c2s)
    return Session(Sealer(send), Opener(recv))


def _check_grid(key: GridKey, peer: Hello) -> None:
    if peer.grid_id != key.grid_id:
        raise HandshakeError(
            f"peer {_printable(peer.node_id)} is on grid {_printable(peer.grid_id)}, "
            f"we are on {key.grid_id}",
            reason="grid",
        )


class ClientHandshake:
    """The connecting side: ``hello()``, ``on_server_hello()`` -> proof, ``on_welcome()``.
    ``ephemeral``: 32 fresh random bytes (this connection's X25519 secret)."""

    def __init__(self, key: GridKey, node: NodeKey, ephemeral: bytes) -> None:
        self._key, self._node = key, node
        self._eph = _Ephemeral(ephemeral)
        self._hello = Hello(
            PROTOCOL_VERSION, key.grid_id, node.node_id, self._eph.public, node.public
        )
        self._transcript: bytes | None = None
        self._shared = b""
        self.peer: Hello | None = None

    def hello(self) -> bytes:
        return _encode_hello(_HELLO, self._hello)

    def on_server_hello(self, data: bytes) -> bytes:
        """Check the server's hello, identity and proofs; return our PROOF message."""
        _check_refusal(data)
        server, proofs = _parse_hello(_SERVER_HELLO, data, _PROOFS)
        _check_grid(self._key, server)
        transcript = _transcript(self._hello, server)
        _check_proofs(self._key, server, b"srv", transcript, proofs)
        self._shared = self._eph.shared(server.ephemeral)
        self.peer, self._transcript = server, transcript
        return _PROOF + _proofs(self._key, self._node, b"cli", transcript)

    def on_welcome(self, data: bytes) -> Session:
        """Check the server's acceptance; return the client's session."""
        if self._transcript is None:
            raise RuntimeError("on_welcome before on_server_hello")
        _check_refusal(data)
        expected = _WELCOME + _mac(self._key.secret, b"acc", self._transcript)
        if not hmac.compare_digest(data, expected):
            raise HandshakeError("bad WELCOME from peer", reason="proof")
        return _session(self._key, self._shared, self._transcript, client=True)


class ServerHandshake:
    """The accepting side: ``on_client_hello()`` -> SERVER_HELLO, ``on_proof()``.
    ``ephemeral``: 32 fresh random bytes (this connection's X25519 secret)."""

    def __init__(self, key: GridKey, node: NodeKey, ephemeral: bytes) -> None:
        self._key, self._node = key, node
        self._eph = _Ephemeral(ephemeral)
        self._hello = Hello(
            PROTOCOL_VERSION, key.grid_id, node.node_id, self._eph.public, node.public
        )
        self._transcript: bytes | None = None
        self._shared = b""
        self.peer: Hello | None = None

    def on_client_hello(self, data: bytes) -> bytes:
        """Check the client's hello (version, grid, id = fingerprint of its key); return our
        SERVER_HELLO (with our proofs)."""
        client, _ = _parse_hello(_HELLO, data, 0)
        self.peer = client
        _check_grid(self._key, client)
        self._shared = self._eph.shared(client.ephemeral)
        self._transcript = _transcript(client, self._hello)
        return _encode_hello(
            _SERVER_HELLO,
            self._hello,
            _proofs(self._key, self._node, b"srv", self._transcript),
        )

    def on_proof(self, data: bytes) -> tuple[bytes, Session]:
        """Check the client's proofs; return our WELCOME and the server's session."""
        if self._transcript is None or self.peer is None:
            raise RuntimeError("on_proof before on_client_hello")
        if len(data) != len(_PROOF) + _PROOFS or not data.startswith(_PROOF):
            raise HandshakeError(
                f"peer {_printable(self.peer.node_id)} sent a malformed PROOF", reason="proof"
            )
        _check_proofs(self._key, self.peer, b"cli", self._transcript, data[len(_PROOF) :])
        welcome = _WELCOME + _mac(self._key.secret, b"acc", self._transcript)
        return welcome, _session(self._key, self._shared, self._transcript, client=False)


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
