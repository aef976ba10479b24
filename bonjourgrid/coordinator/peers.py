"""Who a coordinator is, the other daemons that may hold an app, and how to ask them.

One request per fresh authenticated control channel (``ask``); ``query_app`` asks a peer
what it knows of an app (its term and role there).
"""

from __future__ import annotations

from dataclasses import dataclass

from bonjourgrid.control.channel import connect
from bonjourgrid.control.dial import PREFERENCES
from bonjourgrid.control.messages import AppQuery, AppState
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.gridkey import GridKey


@dataclass(frozen=True)
class Identity:
    """Who coordinates: this daemon's node and host, with the grid key and the node key
    (``node`` is its fingerprint)."""

    node: str
    host: str
    key: GridKey
    node_key: NodeKey


@dataclass(frozen=True)
class Peer:
    """Another daemon that may hold this app (from mDNS): where to ask it. ``addresses`` are
    scoped to the interface each was learned on (control/addresses.py)."""

    node: str
    addresses: tuple[str, ...]
    port: int
    term: int


async def ask(peer: Peer, msg: object, me: Identity, timeout: float) -> object | None:
    """One request to ``peer`` over a fresh authenticated channel; None if it is silent."""
    for address in PREFERENCES.order(peer.node, peer.addresses):
        try:
            ch = await connect(
                address, peer.port, key=me.key, node=me.node_key, timeout=timeout, expect=peer.node
            )
        except Exception:
            continue
        try:
            return await ch.request(msg, timeout=timeout)
        except Exception:
            return None
        finally:
            await ch.close()
    return None


async def query_app(peer: Peer, app: str, me: Identity, timeout: float) -> AppState | None:
    """Ask ``peer`` what it knows of ``app``; None if silent."""
    reply = await ask(peer, AppQuery(app), me, timeout)
    return reply if isinstance(reply, AppState) else None
