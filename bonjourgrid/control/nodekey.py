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

File format: one line ``bjgrid-node-key-v1 <64 hex digits of the Ed25519 seed> <64 hex digits
of its public key>`` (files of earlier versions lack the public key; ``daemon/hostinfo.py``
rewrites them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import InitVar, dataclass, field

from bonjourgrid import curves

NODE_KEY_MAGIC = "bjgrid-node-key-v1"
NODE_ID_HEX = 20
"""Hex digits of the fingerprint that make the node id (see the module docstring)."""
PUBLIC_BYTES = curves.PUBLIC_BYTES
SIGNATURE_BYTES = curves.SIGNATURE_BYTES
_HEX = re.compile(r"[0-9a-f]{64}\Z")


class NodeKeyError(ValueError):
    """A node key file is malformed; the message says how."""


def node_fingerprint(public_raw: bytes) -> str:
    """The node id that belongs to this raw Ed25519 public key."""
    return hashlib.sha256(b"bjgrid node key\0" + public_raw).hexdigest()[:NODE_ID_HEX]


def verify(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the holder of ``public_raw``'s signature of ``message``."""
    return curves.ed25519_valid(public_raw, signature, message)


@dataclass(frozen=True)
class NodeKey:
    """This node's private key. ``node_id`` is its fingerprint; ``public`` the raw key.

    ``stored_public``: the public key as the key file keeps it, so that a daemon learns its
    node id without loading the curve code (``curves``: an idle volunteer never needs it).
    It is checked against the seed before the first signature: a file whose two halves
    disagree makes every handshake fail with a NodeKeyError, never a signature by a key
    other than the one advertised."""

    seed: bytes = field(repr=False)
    stored_public: InitVar[bytes | None] = None
    public: bytes = field(init=False)
    node_id: str = field(init=False)

    def __post_init__(self, stored_public: bytes | None) -> None:
        if len(self.seed) != curves.SEED_BYTES:
            raise NodeKeyError(f"a node key seed is {curves.SEED_BYTES} bytes")
        raw = curves.ed25519_public(self.seed) if stored_public is None else stored_public
        if len(raw) != PUBLIC_BYTES:
            raise NodeKeyError(f"a node public key is {PUBLIC_BYTES} bytes")
        object.__setattr__(self, "public", raw)
        object.__setattr__(self, "node_id", node_fingerprint(raw))

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh key (the only call here that draws randomness)."""
        return cls(curves.ed25519_seed())

    def sign(self, message: bytes) -> bytes:
        if curves.ed25519_public(self.seed) != self.public:
            raise NodeKeyError("the node key's stored public key is not its seed's")
        return curves.ed25519_sign(self.seed, message)

    def dumps(self) -> str:
        return f"{NODE_KEY_MAGIC} {self.seed.hex()} {self.public.hex()}\n"

    @classmethod
    def loads(cls, text: str, *, source: str = "node key") -> NodeKey:
        """The key in ``text``: the magic, the seed, and the public key (absent from files
        written before it was stored), each 64 hex digits."""
        parts = text.split()
        if (
            len(parts) not in (2, 3)
            or parts[0] != NODE_KEY_MAGIC
            or not all(_HEX.match(p) for p in parts[1:])
        ):
            raise NodeKeyError(
                f"{source}: not a bjgrid node key "
                f"(expected '{NODE_KEY_MAGIC} <64 hex digits> [<64 hex digits>]')"
            )
        public = bytes.fromhex(parts[2]) if len(parts) == 3 else None
        return cls(bytes.fromhex(parts[1]), public)
