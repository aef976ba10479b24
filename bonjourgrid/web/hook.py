"""Start the web view beside a running daemon (``bjgrid join`` and ``bjgrid serve``).

The URL, with its token, is written to ``web.url`` in the state dir (mode 0600: the user's
own, like the daemon's socket) for ``bjgrid status --web``, and removed when the view stops.
It is never logged; when the view is shared on the LAN the caller prints it on the terminal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from bonjourgrid.web.access import Access, is_loopback_address, new_token, parse_listen
from bonjourgrid.web.server import WebServer
from bonjourgrid.web.source import DaemonSource

if TYPE_CHECKING:
    from bonjourgrid.daemon.node import NodeDaemon

log = logging.getLogger(__name__)

URL_FILE = "web.url"
DEFAULT_LISTEN = "127.0.0.1"
OFF = "off"


def url_file(state_dir: Path) -> Path:
    return state_dir / URL_FILE


def _url_host(address: str, lan: list[str]) -> str:
    if address in ("0.0.0.0", "::"):
        v4 = [a for a in lan if ":" not in a]
        address = (v4 or lan or ["127.0.0.1"])[0]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]"
    return address


@contextlib.asynccontextmanager
async def web_view(daemon: NodeDaemon, listen: str) -> AsyncIterator[str | None]:
    """Serve the view at ``listen`` (``ADDR[:PORT]``, or "off") while the block runs; yields
    its URL (None when off)."""
    if listen.strip().lower() == OFF:
        yield None
        return
    address, port = parse_listen(listen)
    access = Access(new_token(), loopback_only=is_loopback_address(address))
    server = WebServer(DaemonSource(daemon), access)
    port = await server.start(address, port)
    lan = list(daemon.discovery.addresses) if daemon.discovery is not None else []
    url = f"http://{_url_host(address, lan)}:{port}/?token={access.token}"
    path = url_file(daemon.paths.state_dir)
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
    tmp.replace(path)
    log.info(
        "web view on %s port %d (%s)", address, port,
        "loopback only" if access.loopback_only else "shared on the LAN, token needed",
    )  # fmt: skip
    try:
        yield url
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        await server.close()


def listen_problem(value: str) -> str | None:
    """Why ``--web-listen VALUE`` cannot be used, or None."""
    if value.strip().lower() == OFF:
        return None
    try:
        parse_listen(value)
    except ValueError as e:
        return str(e)
    return None
