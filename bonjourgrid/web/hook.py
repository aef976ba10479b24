"""Start the web view beside a running daemon (``bjgrid join`` and ``bjgrid serve``), lazily.

Only this module (standard library only) is loaded while nobody looks: it binds the view's
port and writes its URL, and the server itself (server.py, page.py, source.py, ...) is imported
when the first connection arrives — the idle `bjgrid join` costs one listening socket, no
imports (tests/cli/test_lazy_commands.py checks it).

The URL, with its token, is written to ``web.url`` in the state dir (mode 0600: the user's
own, like the daemon's socket) for ``bjgrid status --web``, and removed when the view stops.
It is never logged; when the view is shared on the LAN the caller prints it on the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bonjourgrid.daemon.node import NodeDaemon
    from bonjourgrid.web.server import WebServer

log = logging.getLogger(__name__)

URL_FILE = "web.url"
DEFAULT_LISTEN = "127.0.0.1"
OFF = "off"
HEAD_LIMIT = 8192
"""The stream reader's buffer limit: ``http.MAX_HEAD`` (a test checks they agree)."""
TOKEN_BYTES = 16
"""128 random bits: not guessable over a LAN at any request rate."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def url_file(state_dir: Path) -> Path:
    return state_dir / URL_FILE


def is_loopback_address(address: str) -> bool:
    """A bind address that only this machine can reach."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or ``:PORT`` (loopback) as (address, port);
    port 0 is any free port. ValueError names what is wrong."""
    v = value.strip()
    if not v:
        raise ValueError("empty address")
    port_text = ""
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise ValueError(f"{value!r}: unclosed [")
        addr, rest = v[1:end], v[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{value!r}: expected :PORT after ]")
            port_text = rest[1:]
    elif v.count(":") == 1:
        addr, _, port_text = v.partition(":")
        addr = addr or DEFAULT_LISTEN
    else:
        addr = v
    if port_text and (not port_text.isdigit() or not 0 <= int(port_text) <= 65535):
        raise ValueError(f"{value!r}: port must be 0..65535")
    if addr != "localhost":
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"{value!r}: {addr!r} is not an IP address") from None
    return addr, int(port_text or 0)


def listen_problem(value: str) -> str | None:
    """Why ``--web-listen VALUE`` cannot be used, or None."""
    if value.strip().lower() == OFF:
        return None
    try:
        parse_listen(value)
    except ValueError as e:
        return str(e)
    return None


def _url_host(address: str, lan: list[str]) -> str:
    if address in ("0.0.0.0", "::"):
        v4 = [a for a in lan if ":" not in a]
        address = (v4 or lan or ["127.0.0.1"])[0]
    address = address.split("%", 1)[0]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]"
    return address


class _LazyView:
    """Accepts connections; builds the server (importing it) on the first one."""

    def __init__(self, daemon: NodeDaemon, token: str, loopback_only: bool) -> None:
        self.daemon = daemon
        self.token = token
        self.loopback_only = loopback_only
        self.web: WebServer | None = None

    def _server(self) -> WebServer:
        if self.web is None:
            from bonjourgrid.web.access import Access
            from bonjourgrid.web.server import WebServer
            from bonjourgrid.web.source import DaemonSource

            name = self.daemon.host.hostname
            names = frozenset({name.lower(), f"{name.lower()}.local"})
            access = Access(self.token, loopback_only=self.loopback_only, names=names)
            self.web = WebServer(DaemonSource(self.daemon), access)
            log.info("web view: first visitor, server loaded")
        return self.web

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._server().serve_connection(reader, writer)


@contextlib.asynccontextmanager
async def web_view(daemon: NodeDaemon, listen: str) -> AsyncIterator[str | None]:
    """Serve the view at ``listen`` (``ADDR[:PORT]``, or "off") while the block runs; yields
    its URL (None when off)."""
    if listen.strip().lower() == OFF:
        with contextlib.suppress(FileNotFoundError):  # left by a daemon that was killed
            url_file(daemon.paths.state_dir).unlink()
        yield None
        return
    address, port = parse_listen(listen)
    view = _LazyView(daemon, new_token(), is_loopback_address(address))
    server = await asyncio.start_server(view.accept, address, port, limit=HEAD_LIMIT)
    port = int(server.sockets[0].getsockname()[1])
    lan = list(daemon.discovery.addresses) if daemon.discovery is not None else []
    url = f"http://{_url_host(address, lan)}:{port}/?token={view.token}"
    path = url_file(daemon.paths.state_dir)
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
    tmp.replace(path)
    log.info(
        "web view on %s port %d (%s)", address, port,
        "loopback only" if view.loopback_only else "shared on the LAN, token needed",
    )  # fmt: skip
    try:
        yield url
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server.close()
        if view.web is not None:
            await view.web.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
