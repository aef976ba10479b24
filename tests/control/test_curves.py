"""`bonjourgrid.curves` (libsodium) agrees with `cryptography` (OpenSSL) on the same keys, and
refuses what an attacker would send: tampered, truncated or foreign signatures, malformed and
low-order public keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bonjourgrid import curves

SEEDS = [bytes(range(32)), b"\xff" * 32, b"bjgrid".ljust(32, b"\0")]
RAW = (Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize("seed", SEEDS)
def test_ed25519_keys_and_signatures_match_openssls(seed: bytes) -> None:
    theirs = Ed25519PrivateKey.from_private_bytes(seed)
    public = curves.ed25519_public(seed)
    assert public == theirs.public_key().public_bytes(*RAW)
    signature = curves.ed25519_sign(seed, b"transcript")
    assert signature == theirs.sign(b"transcript")  # Ed25519 is deterministic
    Ed25519PublicKey.from_public_bytes(public).verify(signature, b"transcript")
    assert curves.ed25519_valid(public, theirs.sign(b"other"), b"other")


@pytest.mark.parametrize("seed", SEEDS)
def test_x25519_agreement_matches_openssls(seed: bytes) -> None:
    peer = X25519PrivateKey.from_private_bytes(b"\x42" * 32)
    peer_public = peer.public_key().public_bytes(*RAW)
    ours = curves.x25519_public(seed)
    assert ours == X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(*RAW)
    assert curves.x25519_shared(seed, peer_public) == peer.exchange(
        X25519PublicKey.from_public_bytes(ours)
    )


def test_a_fresh_seed_is_random_and_of_the_right_size() -> None:
    a, b = curves.ed25519_seed(), curves.ed25519_seed()
    assert len(a) == curves.SEED_BYTES and a != b


@pytest.mark.parametrize(
    "public, signature, message",
    [
        (curves.ed25519_public(SEEDS[0]), curves.ed25519_sign(SEEDS[0], b"m"), b"M"),  # other text
        (curves.ed25519_public(SEEDS[1]), curves.ed25519_sign(SEEDS[0], b"m"), b"m"),  # other key
        (curves.ed25519_public(SEEDS[0]), curves.ed25519_sign(SEEDS[0], b"m")[:63], b"m"),
        (curves.ed25519_public(SEEDS[0]), b"\0" * 64, b"m"),
        (curves.ed25519_public(SEEDS[0])[:31], curves.ed25519_sign(SEEDS[0], b"m"), b"m"),
        (b"\0" * 32, b"\0" * 64, b"m"),  # small-order key, all-zero signature
        (b"\x01" + b"\0" * 31, b"\x01" + b"\0" * 63, b""),  # the identity point
        (b"", b"", b""),
    ],
)
def test_hostile_signatures_and_keys_are_not_valid(
    public: bytes, signature: bytes, message: bytes
) -> None:
    assert curves.ed25519_valid(public, signature, message) is False


@pytest.mark.parametrize("peer", [b"\0" * 32, b"\x01" + b"\0" * 31, b"\0" * 31, b""])
def test_a_malformed_or_low_order_peer_key_is_a_value_error(peer: bytes) -> None:
    with pytest.raises(ValueError):
        curves.x25519_shared(SEEDS[0], peer)
