"""The pairing wire format: typed, length-prefixed frames with a hard size bound. Pure.

A frame is ``type (1 byte) | length (2 bytes, big-endian) | body``. Every body has a size
known in advance, so a frame whose length is over ``MAX_BODY`` or not its type's is refused
before its body is read: a hostile peer cannot make us buffer more than one small frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct(">BH")
MAX_BODY = 256


class FrameError(ValueError):
    """The peer sent something that is not a valid frame: drop the connection."""


class Kind(IntEnum):
    HELLO = 1  # joiner -> inviter: version byte + SPAKE2 message A
    REPLY = 2  # inviter -> joiner: SPAKE2 message B
    CONFIRM = 3  # joiner -> inviter: HMAC proving the joiner derived the same key
    KEY = 4  # inviter -> joiner: HMAC proving the inviter did + the sealed grid key
    FAIL = 5  # either way: a short UTF-8 reason, then the connection closes


SIZES: dict[Kind, tuple[int, int]] = {
    Kind.HELLO: (34, 34),
    Kind.REPLY: (33, 33),
    Kind.CONFIRM: (32, 32),
    Kind.KEY: (32 + 12 + 32 + 16, 32 + 12 + 32 + 16),
    Kind.FAIL: (1, 120),
}
"""Allowed body sizes (min, max) per kind."""


@dataclass(frozen=True)
class Frame:
    kind: Kind
    body: bytes


def encode(frame: Frame) -> bytes:
    lo, hi = SIZES[frame.kind]
    if not lo <= len(frame.body) <= hi:
        raise ValueError(f"{frame.kind.name} body of {len(frame.body)} bytes")
    return HEADER.pack(frame.kind, len(frame.body)) + frame.body


def fail(reason: str) -> Frame:
    return Frame(Kind.FAIL, reason.encode()[: SIZES[Kind.FAIL][1]] or b"?")


def check_header(header: bytes) -> tuple[Kind, int]:
    """The kind and body length of a frame header; FrameError if either is not allowed."""
    if len(header) != HEADER.size:
        raise FrameError("short frame header")
    kind_byte, length = HEADER.unpack(header)
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise FrameError(f"unknown frame type {kind_byte}") from None
    lo, hi = SIZES[kind]
    if length > MAX_BODY or not lo <= length <= hi:
        raise FrameError(f"{kind.name} frame of {length} bytes")
    return kind, length


class Decoder:
    """Bytes in, whole frames out (sans-IO). Holds at most one header and one small body."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= HEADER.size:
            kind, length = check_header(self._buf[: HEADER.size])
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append(Frame(kind, self._buf[HEADER.size : end]))
            self._buf = self._buf[end:]
        return frames
