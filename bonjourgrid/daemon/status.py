"""`bjgrid status`: what discovery lists, checked against each machine's control port.

mDNS keeps a machine that died without a goodbye listed for over an hour (DESIGN.md), so a
listing alone proves nothing: every machine is pinged over the authenticated channel, and one
that does not answer in time is shown as unreachable, never as plain idle. One that refuses
our handshake for a reason worth acting on (another control protocol version: "upgrade it";
a node id its key does not prove; another grid) is shown unreachable with that reason in
``refused``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bonjourgrid.control.addresses import plain
from bonjourgrid.control.channel import AuthError, connect
from bonjourgrid.control.dial import PREFERENCES
from bonjourgrid.control.messages import Ping, Pong
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.discovery import CoordinatorRecord, Machine
from bonjourgrid.gridkey import GridKey

log = logging.getLogger(__name__)


_SHOWN_REFUSALS = frozenset({"version", "identity", "grid"})
"""Handshake failures ``status`` explains (AuthError.reason); others are plain unreachable."""


async def ask_pong(
    address: str, port: int, key: GridKey, node: NodeKey, timeout: float, expect: str | None
) -> tuple[Pong | None, str]:
    """The machine's own answer (None if none within ``timeout``, all included), and why it
    refused us when it did for a reason in ``_SHOWN_REFUSALS`` ("" otherwise)."""

    async def ask() -> object:
        ch = await connect(address, port, key=key, node=node, timeout=timeout, expect=expect)
        try:
            return await ch.request(Ping(), timeout=timeout)
        finally:
            await ch.close()

    try:
        reply = await asyncio.wait_for(ask(), timeout)
    except AuthError as e:
        log.debug("ping %s:%d refused: %s", address, port, e)
        return None, str(e) if e.reason in _SHOWN_REFUSALS else ""
    except Exception as e:
        log.debug("ping %s:%d failed: %s", address, port, e)
        return None, ""
    return (reply if isinstance(reply, Pong) else None), ""


async def ping(address: str, port: int, key: GridKey, node: NodeKey, timeout: float) -> Pong | None:
    """The machine's own answer, or None if it gave none within ``timeout`` (all included)."""
    return (await ask_pong(address, port, key, node, timeout, None))[0]


async def _ping_any(
    m: Machine, key: GridKey, node: NodeKey, timeout: float
) -> tuple[Pong | None, str]:
    refused = ""
    for address in PREFERENCES.order(m.node, m.addresses):
        pong, why = await ask_pong(address, m.port, key, node, timeout, m.node)
        if pong is not None:
            return pong, ""
        refused = refused or why
    return None, refused


async def machine_rows(
    machines: Sequence[Machine],
    coords: Sequence[CoordinatorRecord],
    *,
    key: GridKey,
    node: NodeKey,
    timeout: float,
) -> list[dict[str, object]]:
    """One row per machine, in DESIGN.md's `status --json` shape plus ``refused`` (why the
    machine refused our handshake, null if it did not), sorted by host name."""
    answers = await asyncio.gather(*(_ping_any(m, key, node, timeout) for m in machines))
    rows: list[dict[str, object]] = []
    for m, (pong, refused) in zip(machines, answers, strict=True):
        advertised = sorted(c.app for c in coords if c.node == m.node)
        if pong is not None and pong.state in ("idle", "worker"):
            row: dict[str, object] = {
                "id": m.node,
                "host": pong.host,
                "state": pong.state,
                "reachable": True,
                "addresses": plain(m.addresses),
                "cpus": pong.cpus,
                "slots": pong.slots,
                "app": pong.app if pong.state == "worker" else None,
                "coordinator": pong.coordinator if pong.state == "worker" else None,
                "coordinates": sorted(pong.coordinates),
                "refused": None,
                **_isolation(m),
            }
        else:
            row = {
                "id": m.node,
                "host": m.host,
                "state": m.state,
                "reachable": False,
                "addresses": plain(m.addresses),
                "cpus": m.txt.cpus,
                "slots": m.txt.slots,
                "app": m.txt.app if m.state == "worker" else None,
                "coordinator": m.txt.coordinator if m.state == "worker" else None,
                "coordinates": advertised,
                "refused": refused or None,
                **_isolation(m),
            }
        rows.append(row)
    rows.sort(key=lambda r: (str(r["host"]), str(r["id"])))
    return rows


def _isolation(m: Machine) -> dict[str, object]:
    """How the machine isolates tasks (``none``: it refuses them) and why, from its record;
    and ``owner``: ``busy`` while its owner uses it or paused it (it takes no grid work),
    else ``ok``; ``paused``: its owner said "not now" (``bjgrid pause``)."""
    return {
        "isolation": m.txt.isolation or None,
        "isolation_reason": m.txt.isolation_reason,
        "owner": "busy" if m.txt.policy in ("busy", "paused") else "ok",
        "paused": m.txt.policy == "paused",
    }
