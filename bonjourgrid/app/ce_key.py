"""The CE key: an Ed25519 key pair made for one app, whose holder may coordinate the app.

``bjgrid submit`` makes one per app; its public half is part of what the user signs
(app/signing.py), its private half stays with the coordinator and is handed to the app's
replicas (``ReplicaOpen.ce_secret``) so that an elected replica can prove itself too. A
volunteer accepts a ``Reserve`` — the first one, and any later one that re-homes it to a
higher term or another coordinator — only with a *proof of coordination*: the CE key's
signature over (app, term, coordinator node id, volunteer node id). So a grid-key holder
without the CE key can neither replay a signed app under another coordinator nor take a
worker away from the app's real coordinator.

The proof binds the volunteer's node id (a proof made for one volunteer is useless at
another) and the claimed coordinator (the volunteer also checks that the channel's proven
peer is that coordinator). Everything here is pure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from bonjourgrid import curves

_PROOF_DOMAIN = b"bjgrid coordination proof v1\0"
_KEY_BYTES = 32
_SIG_BYTES = 64


class CEKeyError(ValueError):
    """A CE key or proof is malformed (not the right number of hex digits)."""


@dataclass(frozen=True)
class CEKey:
    """The private CE key of one app (``hex()`` is what the journal and ReplicaOpen keep)."""

    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> CEKey:
        return cls(os.urandom(_KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> CEKey:
        return cls(_unhex(text, _KEY_BYTES, "CE key"))

    def hex(self) -> str:
        return self.seed.hex()

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key (what the app's signature covers)."""
        return curves.ed25519_public(self.seed)

    def prove(self, app: str, term: int, coordinator: str, volunteer: str) -> str:
        """The proof (hex) that the holder of this key coordinates ``app`` in ``term`` as
        node ``coordinator``, addressed to volunteer node ``volunteer``."""
        payload = proof_payload(app, term, coordinator, volunteer)
        return curves.ed25519_sign(self.seed, payload).hex()


def proof_payload(app: str, term: int, coordinator: str, volunteer: str) -> bytes:
    """The exact bytes a proof of coordination signs (domain tag, then canonical JSON)."""
    body = {"app": app, "coordinator": coordinator, "term": term, "volunteer": volunteer}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _PROOF_DOMAIN + text.encode("ascii")


def proof_problem(
    public: bytes, proof: str, *, app: str, term: int, coordinator: str, volunteer: str
) -> str | None:
    """Why ``proof`` does not show that the holder of CE key ``public`` coordinates ``app``
    in ``term`` as ``coordinator`` for ``volunteer`` (None: it does)."""
    if not proof:
        return "no proof of coordination (the app's CE key signs every reservation)"
    try:
        sig = _unhex(proof, _SIG_BYTES, "proof")
    except CEKeyError as e:
        return f"malformed proof of coordination: {e}"
    if len(public) != curves.PUBLIC_BYTES:
        return "malformed proof of coordination: the app's CE key is not 32 bytes"
    if not curves.ed25519_valid(public, sig, proof_payload(app, term, coordinator, volunteer)):
        return (
            f"the proof of coordination for app {app} term {term} by {coordinator} was not "
            "made with the app's CE key"
        )
    return None


def public_from_hex(text: str) -> bytes:
    """A CE public key as sent in ``Reserve.ce_key`` (64 hex digits); CEKeyError otherwise."""
    return _unhex(text, _KEY_BYTES, "CE public key")


def _unhex(text: str, size: int, what: str) -> bytes:
    if not isinstance(text, str) or len(text) != 2 * size:
        raise CEKeyError(f"{what}: expected {2 * size} hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CEKeyError(f"{what}: expected {2 * size} hex digits") from None


__all__ = ["CEKey", "CEKeyError", "proof_payload", "proof_problem", "public_from_hex"]
