"""A WebServer over a fixed source, run on loopback in a thread of its own (for tests that
talk to it with plain sockets or a browser: tests/web, tests/security/test_web_hostile.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from bonjourgrid.web import snapshot as snap
from bonjourgrid.web.access import Access
from bonjourgrid.web.hook import new_token
from bonjourgrid.web.server import Limits, WebServer


@dataclass
class FixedSource:
    """The view of a made-up grid; tests change ``machines``/``apps``/``docs`` while it runs."""

    machines: list[dict[str, object]] = field(default_factory=list)
    apps: list[dict[str, object]] = field(default_factory=list)
    docs: dict[str, tuple[dict[str, object], Mapping[str, bytes]]] = field(default_factory=dict)

    async def document(self, app: str | None) -> dict[str, object]:
        detail = None
        if app and app in self.docs:
            doc, tails = self.docs[app]
            detail = snap.tasks(doc, tails)
        rows = snap.machines(self.machines, {})
        return snap.snapshot(rows, snap.apps(self.apps, {}), detail, grid="g1", host="h0")


@dataclass
class Served:
    port: int
    token: str
    source: FixedSource

    def url(self, path: str = "/", **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"token": self.token, **query}.items())
        return f"http://127.0.0.1:{self.port}{path}?{q}"


@contextmanager
def served(
    source: FixedSource | None = None,
    *,
    loopback_only: bool = True,
    names: frozenset[str] = frozenset({"lab-pc", "lab-pc.local"}),
    update_every: float = 0.2,
    limits: Limits | None = None,
) -> Iterator[Served]:
    """Serve ``source`` on 127.0.0.1; ``loopback_only`` False checks Host and token as a view
    shared with ``--web-listen`` on the LAN does (tests stay on loopback)."""
    source = source or FixedSource()
    access = Access(new_token(), loopback_only=loopback_only, names=names)
    loop = asyncio.new_event_loop()
    limits = limits or Limits(update_every=update_every)
    server = WebServer(source, access, limits)
    port = loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Served(port, access.token, source)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def machine(host: str, state: str = "idle", **kw: object) -> dict[str, object]:
    row = {"id": f"n-{host}", "host": host, "state": state, "reachable": True, "cpus": 4,
           "slots": 4, "addresses": ["10.0.0.1"], "coordinates": [], "owner": "ok"}  # fmt: skip
    return {**row, **kw}
