"""One pairing exchange, as two sans-IO state machines (frames in, frames out), and the
invitation's own rules (once, until a deadline, a few wrong guesses). No I/O, no clock.

The exchange (docs/security.md, "Pairing")::

    joiner                                   inviter
    HELLO    v1 | SPAKE2 msg A          ->
                                        <-   REPLY    SPAKE2 msg B
    CONFIRM  HMAC(k_joiner, transcript) ->   (a wrong one spends a guess: FAIL "wrong code")
                                        <-   KEY      HMAC(k_inviter, transcript)
                                                      | nonce | ChaCha20Poly1305(k_seal, key)

The SPAKE2 key is stretched by HKDF over the transcript (both SPAKE2 messages) into three
keys, so every session's keys are its own: replayed frames of another session fail the
confirmation. The joiner proves its key first, so a joiner with a wrong code learns nothing
before the inviter counts its guess; SPAKE2 gives each connection one online guess only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B

from .code import Code
from .frames import Frame, Kind, fail

VERSION = 1
ID_JOINER = b"bjgrid-pair-joiner"
ID_INVITER = b"bjgrid-pair-inviter"
SECRET_BYTES = 32
WRONG_CODE = "wrong code"


class PairingError(Exception):
    """The exchange failed; ``wrong_code`` when the other side proved a different code."""

    def __init__(self, message: str, *, wrong_code: bool = False) -> None:
        super().__init__(message)
        self.wrong_code = wrong_code


@dataclass(frozen=True)
class Keys:
    joiner: bytes = field(repr=False)
    inviter: bytes = field(repr=False)
    seal: bytes = field(repr=False)
    transcript: bytes = field(repr=False)


def derive(spake_key: bytes, msg_a: bytes, msg_b: bytes) -> Keys:
    transcript = hashlib.sha256(b"bjgrid-pair-v1\0" + msg_a + msg_b).digest()
    okm = HKDF(hashes.SHA256(), 96, salt=transcript, info=b"bjgrid pairing keys").derive(spake_key)
    return Keys(okm[:32], okm[32:64], okm[64:], transcript)


def _mac(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, label + transcript, hashlib.sha256).digest()


class Step(Enum):
    START = "start"
    AWAIT_HELLO = "await hello"
    AWAIT_REPLY = "await reply"
    AWAIT_CONFIRM = "await confirm"
    AWAIT_KEY = "await key"
    DONE = "done"
    FAILED = "failed"


class InviterSession:
    """The inviter's side of one connection. ``receive`` returns the frames to send;
    ``outcome`` is set once it ends: "paired", "wrong code" or another reason."""

    def __init__(self, code: Code, secret: bytes, *, may_try: bool = True) -> None:
        if len(secret) != SECRET_BYTES:
            raise ValueError("grid key secret must be 32 bytes")
        self._code = code
        self._secret = secret
        self._keys: Keys | None = None
        self.step = Step.AWAIT_HELLO
        self.outcome = ""
        self.guessed = False
        """The peer's confirmation was checked (one guess of the invitation's budget)."""
        self.may_try = may_try
        """Set False by the invitation when it closed meanwhile: a CONFIRM then fails."""

    def receive(self, frame: Frame) -> list[Frame]:
        if self.step is Step.AWAIT_HELLO and frame.kind is Kind.HELLO:
            return self._hello(frame.body)
        if self.step is Step.AWAIT_CONFIRM and frame.kind is Kind.CONFIRM:
            return self._confirm(frame.body)
        return self._end(f"unexpected {frame.kind.name} frame")

    def _hello(self, body: bytes) -> list[Frame]:
        if body[0] != VERSION:
            return self._end(f"pairing version {body[0]} (this machine speaks {VERSION})")
        msg_a = body[1:]
        spake = SPAKE2_B(self._code.password, idA=ID_JOINER, idB=ID_INVITER)
        msg_b = spake.start()
        try:
            key = spake.finish(msg_a)
        except Exception:  # spake2: ValueError (not a point) or SPAKEError (wrong side)
            return self._end("malformed SPAKE2 message")
        self._keys = derive(key, msg_a, msg_b)
        self.step = Step.AWAIT_CONFIRM
        return [Frame(Kind.REPLY, msg_b)]

    def _confirm(self, body: bytes) -> list[Frame]:
        assert self._keys is not None
        if not self.may_try:
            return self._end("invitation closed")
        self.guessed = True
        want = _mac(self._keys.joiner, b"joiner", self._keys.transcript)
        if not hmac.compare_digest(body, want):
            return self._end(WRONG_CODE)
        nonce = os.urandom(12)
        sealed = ChaCha20Poly1305(self._keys.seal).encrypt(
            nonce, self._secret, self._keys.transcript
        )
        proof = _mac(self._keys.inviter, b"inviter", self._keys.transcript)
        self.step = Step.DONE
        self.outcome = "paired"
        return [Frame(Kind.KEY, proof + nonce + sealed)]

    def _end(self, reason: str) -> list[Frame]:
        self.step = Step.FAILED
        self.outcome = reason
        return [fail(reason)]


class JoinerSession:
    """The joiner's side: ``start`` gives HELLO; ``receive`` the next frames; ``secret`` is
    the grid key once DONE. Raises PairingError when the exchange fails."""

    def __init__(self, code: Code) -> None:
        self._spake = SPAKE2_A(code.password, idA=ID_JOINER, idB=ID_INVITER)
        self._msg_a = b""
        self._keys: Keys | None = None
        self.step = Step.START
        self.secret = b""

    def start(self) -> Frame:
        assert self.step is Step.START
        self._msg_a = self._spake.start()
        self.step = Step.AWAIT_REPLY
        return Frame(Kind.HELLO, bytes([VERSION]) + self._msg_a)

    def receive(self, frame: Frame) -> list[Frame]:
        if frame.kind is Kind.FAIL:
            self.step = Step.FAILED
            reason = frame.body.decode(errors="replace")
            raise PairingError(reason, wrong_code=reason == WRONG_CODE)
        if self.step is Step.AWAIT_REPLY and frame.kind is Kind.REPLY:
            try:
                key = self._spake.finish(frame.body)
            except Exception:
                self.step = Step.FAILED
                raise PairingError("the inviting machine sent a malformed message") from None
            self._keys = derive(key, self._msg_a, frame.body)
            self.step = Step.AWAIT_KEY
            proof = _mac(self._keys.joiner, b"joiner", self._keys.transcript)
            return [Frame(Kind.CONFIRM, proof)]
        if self.step is Step.AWAIT_KEY and frame.kind is Kind.KEY:
            return self._key(frame.body)
        self.step = Step.FAILED
        raise PairingError(f"the inviting machine sent an unexpected {frame.kind.name} frame")

    def _key(self, body: bytes) -> list[Frame]:
        assert self._keys is not None
        self.step = Step.FAILED
        proof, nonce, sealed = body[:32], body[32:44], body[44:]
        want = _mac(self._keys.inviter, b"inviter", self._keys.transcript)
        if not hmac.compare_digest(proof, want):
            raise PairingError("the inviting machine did not prove the same code", wrong_code=True)
        try:
            secret = ChaCha20Poly1305(self._keys.seal).decrypt(nonce, sealed, self._keys.transcript)
        except Exception:  # cryptography's InvalidTag
            raise PairingError("the grid key did not decrypt (tampered with?)") from None
        if len(secret) != SECRET_BYTES:
            raise PairingError("the inviting machine sent a key of the wrong size")
        self.secret = secret
        self.step = Step.DONE
        return []


class Invitation:
    """One code's rules: it pairs one machine, until ``expires_at`` (a clock value the shell
    supplies), and closes after ``max_wrong`` wrong guesses."""

    def __init__(self, code: Code, *, expires_at: float, max_wrong: int = 3) -> None:
        self.code = code
        self.expires_at = expires_at
        self.max_wrong = max_wrong
        self.wrong = 0
        self.used = False
        self.expired = False

    @property
    def open(self) -> bool:
        return not (self.used or self.expired or self.wrong >= self.max_wrong)

    @property
    def state(self) -> str:
        if self.used:
            return "used"
        if self.expired:
            return "expired"
        if self.wrong >= self.max_wrong:
            return "closed after too many wrong codes"
        return "open"

    def tick(self, now: float) -> None:
        if now >= self.expires_at and not self.used:
            self.expired = True

    def settle(self, session: InviterSession) -> None:
        """Counts the outcome of an ended session."""
        if session.outcome == "paired":
            self.used = True
        elif session.guessed:
            self.wrong += 1
