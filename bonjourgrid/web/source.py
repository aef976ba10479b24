"""What the web view shows, gathered from the daemon it runs in.

Machines and apps come through the daemon's own local socket with the very requests
``bjgrid status`` and ``bjgrid apps`` send (so the view never disagrees with them), plus the
memory and backends each machine's mDNS record adds; one app's tasks come from the app held
in this daemon (its ``results.json`` document and the committed ``stderr`` of failed tasks).
Machines are pinged at most every ``machines_every`` seconds whatever the number of open
pages, apps asked at most every ``apps_every``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from bonjourgrid.control.local_channel import open_local
from bonjourgrid.daemon import local_messages as lm
from bonjourgrid.ids import NAME_RE
from bonjourgrid.web import snapshot as snap

if TYPE_CHECKING:
    from bonjourgrid.daemon.node import NodeDaemon

log = logging.getLogger(__name__)

ETA_WINDOW = 120.0
"""Seconds of progress the ETA's rate is measured over."""


class Source(Protocol):
    """What the server needs (a test gives a fixed one)."""

    async def document(self, app: str | None) -> dict[str, object]: ...


class DaemonSource:
    def __init__(
        self, daemon: NodeDaemon, *, machines_every: float = 3.0, apps_every: float = 1.0
    ) -> None:
        self.daemon = daemon
        self.machines_every = machines_every
        self.apps_every = apps_every
        self._machines: list[dict[str, object]] = []
        self._apps: list[dict[str, object]] = []
        self._machines_at = -1e9
        self._apps_at = -1e9
        self._lock = asyncio.Lock()
        self._progress: dict[str, collections.deque[tuple[float, int]]] = {}

    async def document(self, app: str | None) -> dict[str, object]:
        async with self._lock:  # one refresh for all open pages
            now = time.monotonic()
            if now - self._machines_at >= self.machines_every:
                self._machines = await self._machine_rows()
                self._machines_at = time.monotonic()
            if now - self._apps_at >= self.apps_every:
                self._apps = await self._app_rows()
                self._apps_at = time.monotonic()
        detail = self.detail(app) if app else None
        return snap.snapshot(
            self._machines,
            self._apps,
            detail,
            grid=self.daemon.key.grid_id,
            host=self.daemon.host.hostname,
        )

    async def _ask(self, request: object, timeout: float) -> object:
        ch = await open_local(
            str(self.daemon.paths.daemon_socket), registry=lm.LOCAL, timeout=timeout
        )
        try:
            await ch.send(request)
            return await asyncio.wait_for(ch.recv(), timeout + 2.0)
        finally:
            await ch.close()

    async def _machine_rows(self) -> list[dict[str, object]]:
        try:
            reply = await self._ask(lm.StatusRequest(1.5), 2.0)
        except Exception as e:
            log.debug("web view: status failed: %s", e)
            return self._machines
        if not isinstance(reply, lm.StatusReply):
            return self._machines
        rows = [r for r in reply.machines if isinstance(r, dict)]
        d = self.daemon.discovery
        extra: dict[str, Mapping[str, object]] = {}
        if d is not None:
            for m in d.machines():
                extra[m.node] = {"mem_mb": m.txt.mem_mb, "backends": list(m.txt.backends)}
        return snap.machines(rows, extra)

    async def _app_rows(self) -> list[dict[str, object]]:
        try:
            reply = await self._ask(lm.AppsRequest(1.0), 1.0)
        except Exception as e:
            log.debug("web view: apps failed: %s", e)
            return self._apps
        if not isinstance(reply, lm.AppsReply):
            return self._apps
        rows = [r for r in reply.apps if isinstance(r, dict)]
        return snap.apps(rows, self._etas(rows))

    def _etas(self, rows: list[dict[str, object]]) -> dict[str, float | None]:
        now = time.monotonic()
        etas: dict[str, float | None] = {}
        for r in rows:
            counts = r.get("counts")
            if not isinstance(counts, dict):
                continue
            app = str(r.get("app"))
            ended = snap.ended_count(counts)
            samples = self._progress.setdefault(app, collections.deque(maxlen=256))
            samples.append((now, ended))
            while samples and now - samples[0][0] > ETA_WINDOW:
                samples.popleft()
            etas[app] = snap.eta_seconds(list(samples), snap.task_count(counts) - ended)
        for gone in set(self._progress) - set(etas):
            del self._progress[gone]
        return etas

    def detail(self, app_id: str) -> dict[str, object] | None:
        """The task table of an app this daemon holds; None for another (or a bad id)."""
        if not NAME_RE.match(app_id):
            return None
        app = self.daemon.apps.get(app_id)
        if app is None:
            return None
        doc = app.results()
        tails: dict[str, bytes] = {}
        raw = doc.get("tasks")
        for t in raw if isinstance(raw, list) else []:
            if len(tails) >= snap.MAX_TAILS:
                break
            if isinstance(t, dict) and t.get("state") == "failed":
                tid = str(t.get("id"))
                data = read_tail(app.store.tasks / tid / "stderr") if NAME_RE.match(tid) else None
                if data is not None:
                    tails[tid] = data
        return snap.tasks(doc, tails)


def read_tail(path: object, size: int = snap.TAIL_BYTES + 4) -> bytes | None:
    """The last ``size`` bytes of a regular file (not following a symlink), None if none."""
    import os
    import stat

    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        os.lseek(fd, max(0, st.st_size - size), os.SEEK_SET)
        return os.read(fd, size)
    finally:
        os.close(fd)
