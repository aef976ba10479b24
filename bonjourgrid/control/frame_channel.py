"""The message channel over frames that both kinds of channel share (control/channel.py:
authenticated TCP between daemons; control/local_channel.py: the CLI's Unix socket).

Contract shared by both kinds: ``send`` may be called by several tasks at once (serialised by a
lock); ``recv`` returns the next valid message; an authentic frame whose payload does not decode
or whose ids fail the rules (control/message_checks.py) is logged and closes the channel,
as does, on an authenticated channel, a message naming a sender other than the node the
handshake proved (control/sender_claims.py); and ``recv`` raises :class:`ChannelClosed` at
end of stream or on any framing or authentication failure (the connection is then closed).
``close`` is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from bonjourgrid.control.auth import FrameAuthError
from bonjourgrid.control.codec import MessageError, Registry
from bonjourgrid.control.framing import MAX_FRAME, FrameReader, FrameTooLarge, write_frame

log = logging.getLogger("bonjourgrid.control")

_CLOSE_GRACE = 1.0
"""Seconds ``close`` waits for buffered bytes to flush before aborting the connection."""


class ChannelClosed(Exception):
    """The channel is closed: end of stream, a framing/authentication failure, or close()."""


class FrameChannel:
    """Messages over frames; subclasses wrap payloads (MAC) or not."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, registry: Registry
    ) -> None:
        self._frames = FrameReader(reader, max_size=MAX_FRAME)
        self._writer = writer
        self._registry = registry
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._closed = False

    def _seal(self, payload: bytes) -> bytes:
        return payload

    def _open(self, frame: bytes) -> bytes:
        return frame

    def _refuse(self, msg: object) -> str | None:
        """Why an authentic, valid message must still end the conversation (None: it need
        not)."""
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, msg: object) -> None:
        """Send one message. MessageError if it cannot be encoded; ChannelClosed if closed."""
        payload = self._registry.encode(msg)
        async with self._send_lock:
            if self._closed:
                raise ChannelClosed(f"{self} is closed")
            try:
                write_frame(self._writer, self._seal(payload))
                await self._writer.drain()
            except (OSError, FrameAuthError, FrameTooLarge) as e:
                self._abort()  # the frame may be half-written or its seq used: the stream is lost
                raise ChannelClosed(f"{self}: send failed: {e}") from e

    async def recv(self) -> object:
        """The next message that decodes; ChannelClosed at EOF or on failure."""
        async with self._recv_lock:
            while True:
                if self._closed:
                    raise ChannelClosed(f"{self} is closed")
                try:
                    frame = await self._frames.read()
                except EOFError:
                    self._abort()
                    raise ChannelClosed(f"{self}: closed by peer") from None
                except (FrameTooLarge, OSError) as e:
                    log.warning("closing %s: %s", self, e)
                    self._abort()
                    raise ChannelClosed(f"{self}: {e}") from e
                try:
                    payload = self._open(frame)
                except FrameAuthError as e:
                    log.warning("closing %s: frame failed authentication: %s", self, e)
                    self._abort()
                    raise ChannelClosed(f"{self}: {e}") from e
                try:
                    msg = self._registry.decode(payload)
                except MessageError as e:
                    # An authentic peer that sends an invalid message (a bad id, a path, an
                    # unknown kind) is buggy or hostile: refuse it and end the conversation.
                    log.warning("refused an invalid message from %s, closing: %s", self, e)
                    self._abort()
                    raise ChannelClosed(f"{self}: invalid message: {e}") from e
                why = self._refuse(msg)
                if why is not None:
                    log.warning("refused a message from %s, closing: %s", self, why)
                    self._abort()
                    raise ChannelClosed(f"{self}: {why}")
                return msg

    async def request(self, msg: object, *, timeout: float) -> object:
        """Send ``msg`` and return the next message. On timeout the channel is closed (a late
        reply must not be taken for the answer to a later request) and TimeoutError raised."""
        try:
            return await asyncio.wait_for(self._send_recv(msg), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise

    async def _send_recv(self, msg: object) -> object:
        await self.send(msg)
        return await self.recv()

    def _abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection (flushing what was sent, for up to a second). Idempotent."""
        self._closed = True
        if not self._writer.is_closing():
            self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_GRACE)
        except asyncio.TimeoutError:
            self._writer.transport.abort()
        except Exception:  # the peer may have reset: closed is closed
            pass

    async def __aenter__(self) -> FrameChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
