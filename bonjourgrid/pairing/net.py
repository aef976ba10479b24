"""The I/O shell of pairing: the inviter's TCP server and the joiner's client (asyncio).

Every read is bounded (one frame header, then at most that frame's fixed size) and timed
(``READ_TIMEOUT`` per frame, ``SESSION_TIMEOUT`` per connection), and the server holds at
most ``MAX_CONNECTIONS`` at once: a slow or hostile peer costs a few seconds and a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .code import Code
from .frames import HEADER, Frame, FrameError, check_header, encode, fail
from .session import Invitation, InviterSession, JoinerSession, PairingError, Step

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0
SESSION_TIMEOUT = 20.0
MAX_CONNECTIONS = 4


async def read_frame(reader: asyncio.StreamReader, timeout: float) -> Frame:
    """One frame; FrameError on a bad header, TimeoutError/IncompleteReadError otherwise."""
    header = await asyncio.wait_for(reader.readexactly(HEADER.size), timeout)
    kind, length = check_header(header)
    body = await asyncio.wait_for(reader.readexactly(length), timeout)
    return Frame(kind, body)


class InviteServer:
    """Serves one invitation until it is used, expires, or runs out of guesses.

    ``done`` resolves when the invitation is no longer open. ``on_event`` hears each ended
    connection's outcome (for the terminal)."""

    def __init__(
        self,
        invitation: Invitation,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, str], None] = lambda peer, outcome: None,
        read_timeout: float = READ_TIMEOUT,
        session_timeout: float = SESSION_TIMEOUT,
    ) -> None:
        self.invitation = invitation
        self._secret = secret
        self._clock = clock
        self._on_event = on_event
        self._read_timeout = read_timeout
        self._session_timeout = session_timeout
        self._active = 0
        self._server: asyncio.Server | None = None
        self.done: asyncio.Event = asyncio.Event()
        self.port = 0

    async def start(self, host: str | None = None, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def wait(self) -> str:
        """Until the invitation closes (or expires); returns its state."""
        while not self.done.is_set():
            remaining = self.invitation.expires_at - self._clock()
            if remaining <= 0:
                self.invitation.tick(self._clock())
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), min(remaining, 1.0))
        self.invitation.tick(self._clock())
        return self.invitation.state

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        self.invitation.tick(self._clock())
        if not self.invitation.open or self._active >= MAX_CONNECTIONS:
            with contextlib.suppress(Exception):
                writer.write(encode(fail(f"invitation {self.invitation.state}")))
            await _close(writer)
            return
        self._active += 1
        session = InviterSession(self.invitation.code, self._secret)
        try:
            await asyncio.wait_for(self._run(session, reader, writer), self._session_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, FrameError) as e:
            session.step = Step.FAILED
            session.outcome = session.outcome or (
                "timed out" if isinstance(e, TimeoutError) else f"dropped: {e or type(e).__name__}"
            )
        finally:
            self._active -= 1
            await _close(writer)
        self.invitation.settle(session)
        self.invitation.tick(self._clock())
        self._on_event(peer, session.outcome)
        if not self.invitation.open:
            self.done.set()

    async def _run(
        self, session: InviterSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while session.step not in (Step.DONE, Step.FAILED):
            frame = await read_frame(reader, self._read_timeout)
            self.invitation.tick(self._clock())
            session.may_try = self.invitation.open
            for out in session.receive(frame):
                writer.write(encode(out))
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


async def join_at(host: str, port: int, code: Code, *, read_timeout: float = READ_TIMEOUT) -> bytes:
    """Runs the exchange with the inviter at ``host:port``; the grid key's secret, or
    PairingError (``wrong_code`` when the code was refused)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), read_timeout)
    except (OSError, TimeoutError) as e:
        raise PairingError(f"cannot reach the inviting machine at {host}:{port}: {e}") from None
    session = JoinerSession(code)
    try:
        writer.write(encode(session.start()))
        await writer.drain()
        while session.step is not Step.DONE:
            try:
                frame = await read_frame(reader, read_timeout)
            except FrameError as e:
                raise PairingError(f"the inviting machine sent a bad frame: {e}") from None
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                raise PairingError("the inviting machine closed or stopped answering") from None
            for out in session.receive(frame):
                writer.write(encode(out))
            await writer.drain()
    finally:
        await _close(writer)
    return session.secret
