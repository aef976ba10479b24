"""The project's HTTP server: bounded connections, deadlines on every read, capped bodies.

Anybody on the LAN can reach a coordinator's BOINC project port; only the clients of recruited
volunteers have business there. So, before any BOINC rule applies (``project.py``,
``uploads.py``):

* **connections** are bounded: at most ``max_per_address`` open from one IP address and
  ``max_connections`` in all; when full, the oldest connection of the address with the most
  makes room for a newcomer from an address with fewer (``control/admission.py``'s gate), so
  a flood from one or many addresses cannot lock a volunteer's client out;
* **deadlines**, not per-read timeouts: the request line and headers (and a keep-alive
  connection's idle wait) must arrive within ``header_timeout``; a body of N bytes within
  ``body_timeout + N / min_rate``, and so must a response be taken. A slow-loris client that
  trickles a byte a second is cut off at its deadline;
* **sizes** are capped: headers at ``header_bytes``, a scheduler request (any body but an
  upload) at ``max_request_bytes``, an upload at its file's ``max_nbytes`` plus
  ``upload_header_bytes``. A body over its cap is refused from its ``Content-Length`` (also
  in answer to ``Expect: 100-continue``, before the client sends it) and the connection is
  closed without reading it; no ``Transfer-Encoding`` is accepted (the client always sends a
  length). Nothing is ever ``read()`` without a bound.

Refusals are logged through the site's rate-limited log. Threading: one thread per admitted
connection (``ThreadingHTTPServer``); the gate has its own lock.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from bonjourgrid.ce_backends.boinc.scheduler import RequestError
from bonjourgrid.ce_backends.boinc.uploads import (
    DATA_TAG,
    REFUSED,
    HeaderError,
    SizeQuery,
    UploadStore,
    parse_header,
)
from bonjourgrid.control.admission import HandshakeGate, Ticket

log = logging.getLogger(__name__)

CHUNK = 1 << 16
"""Bytes moved per read or write of a body."""


@dataclass(frozen=True)
class HttpLimits:
    max_request_bytes: int = 2 << 20
    """Any body but an upload. A scheduler request is a few KiB, plus the client's
    ``stderr_out`` (at most 64 KiB) per result it reports at once."""
    upload_header_bytes: int = 16 << 10
    """The XML before an upload's data (~400 bytes from a real client)."""
    header_bytes: int = 64 << 10
    """Request line and headers together."""
    header_timeout: float = 10.0
    """Seconds for the request line and headers, counting a keep-alive connection's wait for
    its next request (libcurl opens another when we close an idle one)."""
    body_timeout: float = 30.0
    """Seconds for a body or a response, plus its size over ``min_rate``."""
    min_rate: float = 32 << 10
    """Bytes per second a body or a response must average (a LAN does thousands of times
    more; a loaded volunteer still far more)."""
    max_connections: int = 64
    max_per_address: int = 16
    """A client opens a connection per transfer (two or three per project at once) and one
    per scheduler RPC; its worker agent one per ``work`` query."""

    def transfer_timeout(self, nbytes: int) -> float:
        return self.body_timeout + nbytes / self.min_rate


class Site(Protocol):
    """What the server serves (``project.Project``)."""

    app_id: str
    uploads: UploadStore

    @property
    def base_path(self) -> str: ...
    @property
    def waiting(self) -> int: ...
    @property
    def max_upload_bytes(self) -> int: ...
    def master_page(self) -> bytes: ...
    def download_path(self, name: str) -> Path | None: ...
    def scheduler_rpc(self, body: bytes) -> tuple[bytes, Any]: ...
    def deliver(self, events: Any) -> None: ...
    def check_deadlines(self) -> None: ...
    def refused(self, peer: str, why: str) -> None: ...


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side, with a deadline and a byte budget armed per phase.

    Past the deadline a read raises TimeoutError; once the budget is spent reads return EOF
    (``exhausted`` says so), so no caller can read more than was allowed."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = 0.0
        self.budget = 0
        self.exhausted = False

    def arm(self, seconds: float, budget: int) -> None:
        self.deadline = time.monotonic() + seconds
        self.budget = budget
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.budget <= 0:
            self.exhausted = True
            return 0
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("read deadline passed")
        self._sock.settimeout(remaining)
        view = memoryview(b).cast("B")[: self.budget]
        n = self._sock.recv_into(view)
        self.budget -= n
        return n


def _hang_up(sock: socket.socket) -> None:
    """Make the connection's thread see EOF now (its socket is closed by that thread)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class ProjectServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    """Listen backlog: a flood is accepted (and refused) quickly; legitimate SYNs wait."""

    def __init__(
        self, site: Site, address: str, port: int, sock: socket.socket | None, limits: HttpLimits
    ) -> None:
        self.site = site
        self.limits = limits
        self._gate = HandshakeGate(overall=limits.max_connections, per_peer=limits.max_per_address)
        self._gate_lock = threading.Lock()
        self._tickets: dict[int, tuple[Ticket, socket.socket]] = {}
        super().__init__((address, port), _Handler, bind_and_activate=sock is None)
        if sock is not None:
            self.socket.close()
            self.socket = sock
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    @property
    def open_connections(self) -> int:
        with self._gate_lock:
            return self._gate.in_progress

    def server_bind(self) -> None:
        # Not HTTPServer.server_bind: its getfqdn() would ask the machine's DNS about our
        # (link-local) address.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def service_actions(self) -> None:
        self.site.check_deadlines()

    def process_request(self, request: Any, client_address: Any) -> None:
        peer = str(client_address[0])
        with self._gate_lock:
            ticket, evicted = self._gate.admit(peer, functools.partial(_hang_up, request))
            if ticket is not None:
                self._tickets[id(request)] = (ticket, request)
        if evicted is not None:
            self.site.refused(evicted.peer, "connection closed to make room for another address")
        if ticket is None:
            self.site.refused(peer, "too many connections")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._gate_lock:
            held = self._tickets.pop(id(request), None)
            if held is not None:
                self._gate.release(held[0])
        super().shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        with self._gate_lock:
            open_now = [sock for _, sock in self._tickets.values()]
        for sock in open_now:
            _hang_up(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("project %s: connection from %s failed", self.site.app_id, client_address,
                  exc_info=True)  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: libcurl sends "Expect: 100-continue" before a large POST and would otherwise
    # wait a second for the "100 Continue" that only 1.1 handlers send.
    protocol_version = "HTTP/1.1"
    server: ProjectServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._raw = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._raw, CHUNK)

    def handle_one_request(self) -> None:
        limits = self.server.limits
        self._raw.arm(limits.header_timeout, limits.header_bytes)
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("project %s: %s", self.server.site.app_id, format % args)

    @property
    def _peer(self) -> str:
        return str(self.client_address[0])

    # --- replies -----------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, ctype: str = "text/xml", **headers: str) -> None:
        self.connection.settimeout(self.server.limits.transfer_timeout(len(body)))
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, code: int, why: str) -> None:
        """Answer ``code`` and close: the body (if any) is left unread."""
        self.server.site.refused(self._peer, why)
        self.close_connection = True
        self._send(code, f"{why}\n".encode(), "text/plain")

    # --- routing -----------------------------------------------------------------------------

    def _sub(self) -> str | None:
        base = self.server.site.base_path
        path = self.path.split("?", 1)[0]
        return path[len(base) :] if path.startswith(base) else None

    def _cap(self, sub: str | None) -> int | None:
        if sub == "cgi":
            return self.server.limits.max_request_bytes
        if sub == "file_upload_handler":
            return self.server.site.max_upload_bytes + self.server.limits.upload_header_bytes
        return None

    def _length(self) -> int | None:
        """The body's declared length, or None (after refusing the request)."""
        if self._raw.exhausted:
            self._refuse(431, "request headers too large")
            return None
        if self.headers.get("Transfer-Encoding"):
            self._refuse(501, "no Transfer-Encoding is accepted")
            return None
        text = self.headers.get("Content-Length", "0" if self.command != "POST" else "")
        if not re.fullmatch(r"[0-9]{1,15}", text.strip()):
            self._refuse(411, "a Content-Length is required")
            return None
        return int(text)

    def handle_expect_100(self) -> bool:
        cap = self._cap(self._sub())
        length = self._length()
        if length is None:
            return False
        if cap is None or length > cap:
            self._refuse(413 if cap is not None else 404, "body too large or nowhere to go")
            return False
        return super().handle_expect_100()

    # --- GET ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        site = self.server.site
        length = self._length()
        if length is None:
            return
        if length:
            self.close_connection = True  # a GET with a body: not read, not kept alive
        sub = self._sub()
        if sub in ("", "index.html"):
            self._send(200, site.master_page(), "text/html")
            return
        if sub == "work":
            self._send(200, f"waiting {site.waiting}\n".encode(), "text/plain")
            return
        if sub is not None and sub.startswith("download/"):
            path = site.download_path(sub[len("download/") :])
            if path is not None:
                self._send_file(path)
                return
        self._send(404, b"not found\n", "text/plain")

    do_HEAD = do_GET

    def _send_file(self, path: Path) -> None:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            m = re.fullmatch(r"bytes=(\d{1,15})-", self.headers.get("Range", "").strip())
            start = int(m.group(1)) if m and 0 < int(m.group(1)) <= size else 0
            f.seek(start)
            self.connection.settimeout(self.server.limits.transfer_timeout(size - start))
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            while chunk := f.read(CHUNK):
                self.wfile.write(chunk)

    # --- POST --------------------------------------------------------------------------------

    def do_POST(self) -> None:
        sub = self._sub()
        cap = self._cap(sub)
        length = self._length()
        if length is None:
            return
        if cap is None:
            self.close_connection = True
            self._send(404, b"not found\n", "text/plain")
            return
        if length > cap:
            self._refuse(413, f"body of {length} bytes over the cap of {cap}")
            return
        self._raw.arm(self.server.limits.transfer_timeout(length), length)
        try:
            if sub == "cgi":
                self._scheduler(length)
            else:
                self._upload(length)
        except (TimeoutError, ConnectionError) as e:
            self.server.site.refused(self._peer, f"body not received in time ({e})")
            self.close_connection = True

    def _read(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes of the body, or None (EOF: the connection is closed)."""
        data = self.rfile.read(n)
        if len(data) < n:
            self.close_connection = True
            return None
        return data

    def _scheduler(self, length: int) -> None:
        site = self.server.site
        body = self._read(length)
        if body is None:
            return
        try:
            reply, events = site.scheduler_rpc(body)
        except RequestError as e:
            self._send(400, f"{e}\n".encode(), "text/plain")
            return
        self._send(200, reply)
        self.wfile.flush()
        site.deliver(events)

    def _upload(self, length: int) -> None:
        site = self.server.site
        head_len = min(length, self.server.limits.upload_header_bytes)
        first = self._read(head_len)
        if first is None:
            return
        cut = first.find(DATA_TAG)
        try:
            parsed = parse_header(first if cut < 0 else first[:cut])
        except HeaderError:
            parsed = None
        if cut < 0:  # only a size query has no data
            if isinstance(parsed, SizeQuery) and head_len == length:
                self._send(200, site.uploads.size(parsed))
            else:
                self._refuse_upload(REFUSED, "an unreadable upload request")
            return
        if parsed is None or isinstance(parsed, SizeQuery):
            self._refuse_upload(REFUSED, "an unreadable upload request")
            return
        data_start = cut + len(DATA_TAG)
        writer = site.uploads.open(parsed, length - data_start)
        if isinstance(writer, bytes):
            self._refuse_upload(writer, f"upload of {parsed.name!r} refused", length > head_len)
            return
        try:
            writer.write(first[data_start:])
            left = length - head_len
            while left > 0:
                chunk = self.rfile.read(min(CHUNK, left))
                if not chunk:
                    break
                writer.write(chunk)
                left -= len(chunk)
        except BaseException:
            writer.finish()  # what arrived stays, for a resumed upload
            raise
        reply = writer.finish()
        if writer.written < writer.length:
            self.close_connection = True
        self._send(200, reply)

    def _refuse_upload(self, reply: bytes, why: str, unread: bool = True) -> None:
        if reply == REFUSED or b"<status>-1" in reply:
            self.server.site.refused(self._peer, why)
        if unread:
            self.close_connection = True
        self._send(200, reply)


__all__ = ["HttpLimits", "ProjectServer", "Site"]
