"""A node's own Ed25519 key; its node id is the key's fingerprint. Pure.

Each daemon makes its key at first start (``daemon/hostinfo.py`` keeps it in ``node.key``,
mode 0600). The node id (``node_fingerprint``: 20 hex digits, 80 bits, of a domain-separated
SHA-256 of the raw public key) is what mDNS records, instance labels and messages carry; the
control handshake (``control/auth.py``) proves it: a peer shows its public key, the receiver
checks that the key's fingerprint is the id claimed, and the peer signs the handshake's
transcript with the key. So the grid key says "member of this lab" and the node key says
"this very machine": a grid-key holder can no longer speak as another node.

20 hex digits keep ids short enough for DNS-SD labels (``discovery/names.py`` allows a node
id of at most 31 bytes) and TXT records, and 2**80 work for a second preimage is far beyond
a lab member's means.

File format: one line ``bjgrid-node-key-v1 <64 hex digits of the Ed25519 seed>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

NODE_KEY_MAGIC = "bjgrid-node-key-v1"
NODE_ID_HEX = 20
"""Hex digits of the fingerprint that make the node id (see the module docstring)."""
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64
_SEED_BYTES = 32
_HEX = re.compile(r"[0-9a-f]{64}\Z")


class NodeKeyError(ValueError):
    """A node key file is malformed; the message says how."""


def node_fingerprint(public_raw: bytes) -> str:
    """The node id that belongs to this raw Ed25519 public key."""
    return hashlib.sha256(b"bjgrid node key\0" + public_raw).hexdigest()[:NODE_ID_HEX]


def verify(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the holder of ``public_raw``'s signature of ``message``."""
    if len(public_raw) != PUBLIC_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NodeKey:
    """This node's private key. ``node_id`` is its fingerprint; ``public`` the raw key."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    node_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.seed) != _SEED_BYTES:
            raise NodeKeyError(f"a node key seed is {_SEED_BYTES} bytes")
        raw = self._private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "public", raw)
        object.__setattr__(self, "node_id", node_fingerprint(raw))

    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh key (the only call here that draws randomness)."""
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        return self._private().sign(message)

    def dumps(self) -> str:
        return f"{NODE_KEY_MAGIC} {self.seed.hex()}\n"

    @classmethod
    def loads(cls, text: str, *, source: str = "node key") -> NodeKey:
        parts = text.split()
        if len(parts) != 2 or parts[0] != NODE_KEY_MAGIC or not _HEX.match(parts[1]):
            raise NodeKeyError(
                f"{source}: not a bjgrid node key (expected '{NODE_KEY_MAGIC} <64 hex digits>')"
            )
        return cls(bytes.fromhex(parts[1]))
