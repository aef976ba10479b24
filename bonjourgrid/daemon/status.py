"""`bjgrid status`: what discovery lists, checked against each machine's control port.

mDNS keeps a machine that died without a goodbye listed for over an hour (DESIGN.md), so a
listing alone proves nothing: every machine is pinged over the authenticated channel, and one
that does not answer in time is shown as unreachable, never as plain idle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bonjourgrid.control.channel import connect
from bonjourgrid.control.messages import Ping, Pong
from bonjourgrid.discovery import CoordinatorRecord, Machine
from bonjourgrid.gridkey import GridKey

log = logging.getLogger(__name__)


async def ping(address: str, port: int, key: GridKey, node_id: str, timeout: float) -> Pong | None:
    """The machine's own answer, or None if it gave none within ``timeout`` (all included)."""

    async def ask() -> object:
        ch = await connect(address, port, key=key, node_id=node_id, timeout=timeout)
        try:
            return await ch.request(Ping(), timeout=timeout)
        finally:
            await ch.close()

    try:
        reply = await asyncio.wait_for(ask(), timeout)
    except Exception as e:
        log.debug("ping %s:%d failed: %s", address, port, e)
        return None
    return reply if isinstance(reply, Pong) else None


async def _ping_any(m: Machine, key: GridKey, node_id: str, timeout: float) -> Pong | None:
    for address in m.addresses:
        pong = await ping(address, m.port, key, node_id, timeout)
        if pong is not None and pong.node == m.node:
            return pong
    return None


async def machine_rows(
    machines: Sequence[Machine],
    coords: Sequence[CoordinatorRecord],
    *,
    key: GridKey,
    node_id: str,
    timeout: float,
) -> list[dict[str, object]]:
    """One row per machine, in DESIGN.md's `status --json` shape, sorted by host name."""
    pongs = await asyncio.gather(*(_ping_any(m, key, node_id, timeout) for m in machines))
    rows: list[dict[str, object]] = []
    for m, pong in zip(machines, pongs, strict=True):
        advertised = sorted(c.app for c in coords if c.node == m.node)
        if pong is not None and pong.state in ("idle", "worker"):
            row: dict[str, object] = {
                "id": m.node,
                "host": pong.host,
                "state": pong.state,
                "reachable": True,
                "addresses": list(m.addresses),
                "cpus": pong.cpus,
                "slots": pong.slots,
                "app": pong.app if pong.state == "worker" else None,
                "coordinator": pong.coordinator if pong.state == "worker" else None,
                "coordinates": sorted(pong.coordinates),
                **_isolation(m),
            }
        else:
            row = {
                "id": m.node,
                "host": m.host,
                "state": m.state,
                "reachable": False,
                "addresses": list(m.addresses),
                "cpus": m.txt.cpus,
                "slots": m.txt.slots,
                "app": m.txt.app if m.state == "worker" else None,
                "coordinator": m.txt.coordinator if m.state == "worker" else None,
                "coordinates": advertised,
                **_isolation(m),
            }
        rows.append(row)
    rows.sort(key=lambda r: (str(r["host"]), str(r["id"])))
    return rows


def _isolation(m: Machine) -> dict[str, object]:
    """How the machine isolates tasks (``none``: it refuses them) and why, from its record."""
    return {"isolation": m.txt.isolation or None, "isolation_reason": m.txt.isolation_reason}
