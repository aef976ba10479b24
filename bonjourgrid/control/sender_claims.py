"""Messages that name their sender must name the peer the handshake proved. Pure.

The control handshake proves the peer's node id (``control/auth.py``: its node key's
fingerprint), so a message that says who sent it — a ``Reserve`` naming its coordinator, a
``VoteRequest`` its candidate — is only believed when that name is the channel's proven peer.
The authenticated channel checks every message it decodes against this table
(``control/channel.py``) and closes the link on a false claim, so no handler can forget to.
"""

from __future__ import annotations

from bonjourgrid.control.messages import Pong, ReplicaOpen, Reserve, VoteRequest

SENDER_FIELDS: dict[type, str] = {
    Reserve: "coordinator",
    ReplicaOpen: "coordinator",
    VoteRequest: "candidate",
    Pong: "node",
}
"""Message class -> the field naming the node that sends it."""


def false_claim(msg: object, peer_node: str) -> str | None:
    """Why ``msg`` lies about its sender (None if it names ``peer_node`` or nobody)."""
    name = SENDER_FIELDS.get(type(msg))
    if name is None:
        return None
    claimed = getattr(msg, name)
    if claimed == peer_node:
        return None
    return f"{type(msg).__name__}.{name} is {claimed!r}, but the peer proved it is {peer_node!r}"
