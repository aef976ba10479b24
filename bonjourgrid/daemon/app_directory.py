"""Finding an app on the LAN: who coordinates it now, or who still holds its results.

``bjgrid results`` and ``bjgrid cancel`` may name an app this machine never held, or one
whose coordinator has changed (a takeover). mDNS says where to look — the app's
``_bjg-coord`` records first, then every machine of the grid (replicas keep an ended app's
results for ``results_keep`` without advertising it) — and the authenticated control channel
says what each holds (``AppQuery``). Best holder: the one whose copy is complete, else the
coordinator with the highest term.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bonjourgrid.control.messages import AppResults, AppState, CancelApp, Error, FetchApp
from bonjourgrid.coordinator.peers import Identity, Peer, ask, query_app

if TYPE_CHECKING:
    from bonjourgrid.discovery import Discovery


def candidates(app: str, discovery: Discovery, me: Identity) -> tuple[list[Peer], list[Peer]]:
    """(the app's coordinator records, every other machine), ourselves excluded."""
    coords = [
        Peer(c.node, c.addresses, c.port, c.txt.term)
        for c in discovery.coordinators()
        if c.app == app and c.node != me.node
    ]
    named = {p.node for p in coords}
    others = [
        Peer(m.node, m.addresses, m.port, 0)
        for m in discovery.machines()
        if m.node != me.node and m.node not in named
    ]
    return coords, others


async def find_holder(
    app: str, discovery: Discovery, me: Identity, timeout: float
) -> tuple[Peer, AppState] | None:
    """The best holder of ``app`` on the LAN, or None."""
    coords, others = candidates(app, discovery, me)
    for group in (coords, others):
        if not group:
            continue
        states = await asyncio.gather(*(query_app(p, app, me, timeout) for p in group))
        held = [(p, s) for p, s in zip(group, states, strict=True) if s is not None and s.role]
        if held:
            return max(held, key=lambda ps: (ps[1].complete, ps[1].coordinating, ps[1].term))
    return None


async def fetch(peer: Peer, app: str, me: Identity, timeout: float) -> AppResults | None:
    reply = await ask(peer, FetchApp(app), me, timeout)
    return reply if isinstance(reply, AppResults) else None


async def cancel(peer: Peer, app: str, me: Identity, timeout: float, reason: str) -> str:
    """'' when the coordinator cancelled the app; otherwise why not."""
    reply = await ask(peer, CancelApp(app, reason), me, timeout)
    if isinstance(reply, AppState):
        return ""
    if isinstance(reply, Error):
        return reply.reason
    return f"{peer.node} did not answer"
