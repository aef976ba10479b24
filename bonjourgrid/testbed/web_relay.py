"""Reach a web view served on a virtual-LAN host's own loopback from this machine's loopback
(``bjgrid demo --web``): two byte pipes joined by a Unix socket file, which, unlike TCP, is
seen from every network namespace. Nothing else opens a port: the outer end listens on
127.0.0.1 only, the inner end connects to the host's 127.0.0.1 only; the view's own token and
Host checks still apply to every request (the browser's Host is 127.0.0.1:PORT, loopback).

    outer (this process, a thread): 127.0.0.1:P  ->  Unix socket file
    inner (inside the host: ``python -m bonjourgrid.testbed.web_relay SOCK PORT``):
          Unix socket file  ->  127.0.0.1:PORT (the view)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
MAX_CONNECTIONS = 64
"""Relayed at once; more are closed (the view itself caps at 64 too)."""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _handler(
    open_other: Opener, limit: int = MAX_CONNECTIONS
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    live = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if live[0] >= limit:
            writer.close()
            return
        live[0] += 1
        try:
            other_r, other_w = await open_other()
        except OSError:
            live[0] -= 1
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, other_w), _pipe(other_r, writer))
        finally:
            live[0] -= 1

    return handle


async def inner(sock: Path, port: int) -> None:
    """Serve ``sock`` (mode 0600) forwarding to 127.0.0.1:``port``, until killed."""
    server = await asyncio.start_unix_server(
        _handler(lambda: asyncio.open_connection("127.0.0.1", port)), str(sock)
    )
    sock.chmod(0o600)
    async with server:
        await server.serve_forever()


class Outer:
    """127.0.0.1:any-port forwarding to ``sock``, served by a thread; :attr:`port`."""

    def __init__(self, sock: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            asyncio.start_server(
                _handler(lambda: asyncio.open_unix_connection(str(sock))), "127.0.0.1", 0
            )
        )
        self.port = int(self.server.sockets[0].getsockname()[1])
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(inner(Path(sys.argv[1]), int(sys.argv[2])))
