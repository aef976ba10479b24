"""Pairing codes: ``<channel>-<word>-<word>-<word>``, e.g. ``7-guitar-otter-maple``. Pure.

The channel (1..999) only tells the joiner which invitation on the LAN to talk to: it is the
one thing the mDNS advertisement carries. The whole code is the SPAKE2 password, so its words
hold the secret: three words of 256 give 2**24 codes, and the inviter allows a few wrong
guesses only (docs/security.md, "Pairing").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from .words import WORDS

N_WORDS = 3
MAX_CHANNEL = 999
_INDEX = {w: i for i, w in enumerate(WORDS)}
_SEP = re.compile(r"[\s\-_.]+")


class CodeError(ValueError):
    """The text is not a pairing code; the message says why."""


@dataclass(frozen=True)
class Code:
    channel: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return "-".join([str(self.channel), *self.words])

    @property
    def password(self) -> bytes:
        """The SPAKE2 password: the code's canonical text, versioned."""
        return b"bjgrid-pair-v1 " + str(self).encode()

    @classmethod
    def generate(cls) -> Code:
        channel = 1 + secrets.randbelow(MAX_CHANNEL)
        return cls(channel, tuple(secrets.choice(WORDS) for _ in range(N_WORDS)))


def parse_code(text: str) -> Code:
    """A code as a person types it: any case, spaces or dashes between the parts."""
    parts = [p for p in _SEP.split(text.strip().lower()) if p]
    example = "expected a code like 7-guitar-otter-maple"
    if len(parts) != 1 + N_WORDS:
        raise CodeError(f"code: {example} (a number and {N_WORDS} words)")
    channel, words = parts[0], parts[1:]
    if not channel.isdigit() or not 1 <= int(channel) <= MAX_CHANNEL:
        raise CodeError(f"code: {example} (it starts with a number 1..{MAX_CHANNEL})")
    unknown = [w for w in words if w not in _INDEX]
    if unknown:
        raise CodeError(f"code: {unknown[0]!r} is not a pairing word (check the spelling)")
    return Code(int(channel), tuple(words))
