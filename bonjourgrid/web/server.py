"""The web view's asyncio shell: accept, read a bounded head in bounded time, check access,
answer one of three paths. Parsing, access and rendering are pure (http.py, access.py,
snapshot.py, page.py); this file only moves bytes.

Paths (GET or HEAD, token needed on each):
  ``/``            the page (page.py)
  ``/state.json``  one snapshot (``?app=ID`` adds that app's tasks)
  ``/events``      the same snapshot as server-sent events, sent again whenever it changes
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from dataclasses import dataclass

from bonjourgrid.ids import NAME_RE
from bonjourgrid.web import http
from bonjourgrid.web.access import Access
from bonjourgrid.web.page import API_CSP, CSP, HTML
from bonjourgrid.web.source import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one visitor, or all of them, may hold (every client is attacker input)."""

    max_connections: int = 64
    """Open connections at once; more are answered 503 and closed."""
    max_per_peer: int = 16
    """Open connections from one address (a browser opens about six): one LAN host holding
    slow connections cannot take every slot."""
    max_streams: int = 16
    """Open event streams at once (each page holds one); more are answered 503."""
    head_timeout: float = http.HEAD_TIMEOUT
    """Seconds a client has to send a whole request head (slowloris)."""
    idle_timeout: float = http.IDLE_TIMEOUT
    """Seconds a kept-alive connection may wait for its next request."""
    write_timeout: float = 10.0
    """Seconds a client may take to accept what we send before it is dropped."""
    max_requests: int = 100
    """Requests on one kept-alive connection."""
    update_every: float = 1.0
    """Seconds between two looks at the state for an event stream."""
    keepalive: float = 15.0
    """Seconds of no change after which a stream sends a comment (proxies, dead peers)."""


class WebServer:
    def __init__(self, source: Source, access: Access, limits: Limits | None = None) -> None:
        self.source = source
        self.access = access
        self.limits = limits or Limits()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._per_peer: collections.Counter[str] = collections.Counter()
        self._streams = 0
        self._closing = False

    async def start(self, address: str, port: int) -> int:
        """Listen; the port bound (``port`` 0: any free one). The daemon's lazy hook accepts
        connections itself and hands them to :meth:`serve_connection`."""
        self._server = await asyncio.start_server(
            self.serve_connection, address, port, limit=http.MAX_HEAD
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # its reader ends at once; no task is cancelled mid-send
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5.0)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve one accepted connection to its end (its reader's limit: http.MAX_HEAD)."""
        task = asyncio.current_task()
        assert task is not None
        peer = _peer(writer)
        lim = self.limits
        if self._closing:
            writer.transport.abort()
            return
        if (
            len(self._connections) >= lim.max_connections
            or self._per_peer[peer] >= lim.max_per_peer
        ):
            with contextlib.suppress(Exception):
                await self._refuse(writer, 503, "too many connections")
            writer.transport.abort()
            return
        self._connections.add(task)
        self._writers.add(writer)
        self._per_peer[peer] += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        except Exception:
            log.exception("web view: connection failed")
        finally:
            self._connections.discard(task)
            self._writers.discard(writer)
            self._per_peer[peer] -= 1
            if self._per_peer[peer] <= 0:
                del self._per_peer[peer]
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(self.limits.max_requests):
            try:
                wait = self.limits.head_timeout if n == 0 else self.limits.idle_timeout
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
            except asyncio.LimitOverrunError:
                await self._refuse(writer, 431, "request head too large")
                return
            except asyncio.TimeoutError:
                await self._refuse(writer, 408, "request too slow")
                return
            except asyncio.IncompleteReadError:
                return
            try:
                req = http.parse_head(head)
                self.access.check(req)
            except http.HttpError as e:
                log.debug("web view: %d for a request", e.status)  # never the target: token
                await self._refuse(writer, e.status, e.message)
                return
            log.debug("web view: %s %s", req.method, req.path)
            if not await self._answer(req, reader, writer):
                return

    async def _answer(
        self, req: http.Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer ``req``; whether the connection may serve another request."""
        app = req.query.get("app") or None
        if app is not None and not NAME_RE.match(app):
            await self._send(writer, http.error_response(400, "bad app id", csp=API_CSP))
            return False
        if req.path == "/":
            return await self._whole(req, writer, "text/html; charset=utf-8", HTML, CSP)
        if req.path == "/state.json":
            doc = await self.source.document(app)
            body = json.dumps(doc, separators=(",", ":")).encode()
            return await self._whole(req, writer, "application/json", body, API_CSP)
        if req.path == "/events":
            await self._stream(req, reader, writer, app)
            return False
        await self._send(writer, http.error_response(404, "not found", csp=API_CSP))
        return False

    async def _whole(
        self, req: http.Request, writer: asyncio.StreamWriter, ctype: str, body: bytes, csp: str
    ) -> bool:
        head = http.response_head(200, ctype, length=len(body), csp=csp, keep_alive=req.keep_alive)
        await self._send(writer, head + (b"" if req.method == "HEAD" else body))
        return req.keep_alive

    async def _stream(
        self,
        req: http.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        app: str | None,
    ) -> None:
        """Send the snapshot whenever it changes, until the client leaves: the wait between
        two looks is a read, so a page closed (EOF) frees its stream slot at once; a client
        sending anything more on a stream is cut off."""
        if self._streams >= self.limits.max_streams:
            await self._send(writer, http.error_response(503, "too many open pages", csp=API_CSP))
            return
        self._streams += 1
        try:
            head = http.response_head(
                200, "text/event-stream; charset=utf-8", length=None, csp=API_CSP, keep_alive=False
            )
            await self._send(writer, head + b"retry: 2000\n\n")
            if req.method == "HEAD":
                return
            last = b""
            quiet = 0.0
            while True:
                doc = await self.source.document(app)
                data = json.dumps(doc, separators=(",", ":")).encode()
                if data != last:
                    await self._send(writer, b"data: " + data + b"\n\n")
                    last, quiet = data, 0.0
                elif quiet >= self.limits.keepalive:
                    await self._send(writer, b": keepalive\n\n")
                    quiet = 0.0
                try:
                    await asyncio.wait_for(reader.read(1), self.limits.update_every)
                    return  # EOF (the page left) or bytes no stream expects
                except asyncio.TimeoutError:
                    quiet += self.limits.update_every
        finally:
            self._streams -= 1

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        await self._send(writer, http.error_response(status, message, csp=API_CSP))

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():  # the peer left or we are stopping: drain() would not say
            raise ConnectionResetError("connection closed")
        writer.write(data)
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)


def _peer(writer: asyncio.StreamWriter) -> str:
    """The client's address (without port), "" when unknown."""
    info = writer.get_extra_info("peername")
    return str(info[0]) if isinstance(info, tuple) and info else ""
