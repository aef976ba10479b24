"""Ed25519 signatures and X25519 key agreement (libsodium, through PyNaCl), loaded on first use.

Every daemon's control handshake needs both curves. The ``cryptography`` package that gave
them before costs 6.8 MB of private memory once imported (its Rust extension carries OpenSSL),
libsodium 1.3 MB (issue 15: an idle volunteer's RSS). And an idle volunteer that nobody has
contacted needs neither: its node id comes from the public key stored beside the seed
(``control/nodekey.py``), so nothing here is imported until the first handshake, signature or
check. Every module that needs one of these primitives calls this module (``cryptography``
remains for what is not on a volunteer's path: pairing's AEAD, BOINC's RSA code signing).

Both libraries implement RFC 8032 / RFC 7748 (tests/control/test_curves.py checks this
module against ``cryptography`` on the same keys); libsodium's verification is the stricter
(it also refuses small-order public keys and non-canonical signatures).

Every key and signature is raw bytes (32-byte seeds and public keys, 64-byte signatures).
"""

from __future__ import annotations

import os

SEED_BYTES = 32
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64


def ed25519_seed() -> bytes:
    """A fresh Ed25519 private key's seed."""
    return os.urandom(SEED_BYTES)


def ed25519_public(seed: bytes) -> bytes:
    """The raw public key of the Ed25519 key with this ``seed``."""
    from nacl.bindings import crypto_sign_seed_keypair

    public, _ = crypto_sign_seed_keypair(seed)
    return bytes(public)


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """The Ed25519 signature of ``message`` by the key with this ``seed``."""
    from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

    _, secret = crypto_sign_seed_keypair(seed)
    return bytes(crypto_sign(message, secret)[:SIGNATURE_BYTES])


def ed25519_valid(public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the holder of ``public``'s signature of ``message``. A
    malformed key or signature (wrong length, not a curve point, of small order) is simply
    not valid."""
    if len(public) != PUBLIC_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import CryptoError

    try:
        crypto_sign_open(signature + message, public)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def x25519_public(secret: bytes) -> bytes:
    """The raw X25519 public key of the 32-byte ``secret``."""
    from nacl.bindings import crypto_scalarmult_base

    return bytes(crypto_scalarmult_base(secret))


def x25519_shared(secret: bytes, peer_public: bytes) -> bytes:
    """The X25519 shared secret of ``secret`` and ``peer_public``. Raises ValueError for a
    peer key that is malformed or of low order (the shared secret would be all zeros)."""
    if len(peer_public) != PUBLIC_BYTES:
        raise ValueError(f"an X25519 public key is {PUBLIC_BYTES} bytes")
    from nacl.bindings import crypto_scalarmult
    from nacl.exceptions import CryptoError

    try:
        return bytes(crypto_scalarmult(secret, peer_public))
    except CryptoError:  # libsodium refuses an all-zero result (a low-order point)
        raise ValueError("a low-order X25519 public key") from None


__all__ = [
    "PUBLIC_BYTES",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "ed25519_public",
    "ed25519_seed",
    "ed25519_sign",
    "ed25519_valid",
    "x25519_public",
    "x25519_shared",
]
