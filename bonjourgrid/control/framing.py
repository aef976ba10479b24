"""Length-prefixed frames over asyncio streams: ``u32 length (big-endian) || bytes``."""

from __future__ import annotations

import asyncio
import struct

MAX_FRAME = 256 * 1024 * 1024
"""Largest frame body. A longer length prefix closes the connection; it is never allocated."""

_LENGTH = struct.Struct(">I")


class FrameTooLarge(ValueError):
    """The peer announced a frame longer than allowed."""


class FrameReader:
    """Reads whole frames. Cancellation-safe: a cancelled ``read()`` loses no bytes, because
    ``readexactly`` consumes all or nothing and a length already read is kept for the retry."""

    def __init__(self, reader: asyncio.StreamReader, *, max_size: int = MAX_FRAME) -> None:
        self._reader = reader
        self.max_size = max_size
        self._pending: int | None = None

    async def read(self) -> bytes:
        """The next frame body; EOFError at end of stream (clean or mid-frame), FrameTooLarge."""
        if self._pending is None:
            (length,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
            if length > self.max_size:
                raise FrameTooLarge(f"frame of {length} bytes announced (limit {self.max_size})")
            self._pending = length
        data = await self._reader.readexactly(self._pending)
        self._pending = None
        return data


def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Queue one frame (the caller drains): its length and body in one write, so a frame
    leaves in one segment where it fits."""
    if len(data) > MAX_FRAME:
        raise FrameTooLarge(f"frame of {len(data)} bytes (limit {MAX_FRAME})")
    writer.writelines((_LENGTH.pack(len(data)), data))
