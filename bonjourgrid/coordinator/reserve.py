"""Dialling a volunteer and asking it for a reservation: the I/O of the engine's ``Recruit``.

Every address the volunteer advertises is tried in the order that worked before
(control/dial.py: a multi-homed or IPv6 host); the handshake proves the peer is the node the
offer names. The ``Reserve`` carries the app's CE public key and the CE key's proof that this
node coordinates the app in this term, made for the one volunteer asked (app/ce_key.py), and
the submitting user's signature for volunteers that only trust some users.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bonjourgrid.control.channel import Channel, connect
from bonjourgrid.control.dial import PREFERENCES
from bonjourgrid.control.messages import Fenced, Reserve, ReserveReply
from bonjourgrid.coordinator.matchmaking import Offer

if TYPE_CHECKING:
    from bonjourgrid.app.ce_key import CEKey
    from bonjourgrid.app.spec import AppSpec
    from bonjourgrid.config import Config
    from bonjourgrid.coordinator.peers import Identity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asker:
    """Who asks, for which app: what every ``Reserve`` of the app carries."""

    app: str
    me: Identity
    config: Config
    spec: AppSpec
    ce_key: CEKey
    bundle_sha: str
    signer: str = ""
    signature: str = ""


@dataclass(frozen=True)
class Reserved:
    """The volunteer accepted: its proven channel and the slots it gives."""

    channel: Channel
    slots: int


@dataclass(frozen=True)
class Refused:
    """No reservation: ``reason``; ``term`` > 0 when the volunteer answered ``Fenced``
    (a higher term coordinates the app)."""

    reason: str
    term: int = 0


async def reserve(asker: Asker, offer: Offer, term: int) -> Reserved | Refused:
    """Ask the volunteer of ``offer`` for a reservation under ``term``."""
    cfg = asker.config
    unreachable = "unreachable"
    for address in PREFERENCES.order(offer.node, offer.addresses):
        try:
            ch = await connect(
                address,
                offer.port,
                key=asker.me.key,
                node=asker.me.node_key,
                timeout=cfg.connect_timeout,
                expect=offer.node,  # the channel's peer is then the node the offer names
            )
        except Exception as e:
            log.debug("app %s: cannot reach %s at %s: %s", asker.app, offer.host, address, e)
            unreachable = f"unreachable ({e})"
            continue
        try:
            ask = Reserve(
                asker.app,
                asker.me.node,
                asker.me.host,
                term,
                cfg.reserve_lease,
                asker.spec.backend,
                user=asker.signer,
                signature=asker.signature,
                bundle_sha256=asker.bundle_sha,
                spec=asker.spec.to_json(),
                ce_key=asker.ce_key.public.hex(),
                # bound to the volunteer the handshake proved (useless at any other)
                proof=asker.ce_key.prove(asker.app, term, asker.me.node, ch.peer_node),
            )
            reply = await ch.request(ask, timeout=cfg.connect_timeout)
        except Exception as e:
            log.debug("app %s: reservation of %s failed: %s", asker.app, offer.host, e)
            await ch.close()
            return Refused(f"no answer ({e})")
        if isinstance(reply, ReserveReply) and reply.accepted:
            log.info("app %s: reserved %s (%d slots)", asker.app, offer.host, reply.slots)
            return Reserved(ch, reply.slots)
        await ch.close()
        if isinstance(reply, Fenced):
            return Refused(f"term {reply.term} coordinates the app", reply.term)
        why = reply.reason if isinstance(reply, ReserveReply) else type(reply).__name__
        log.info("app %s: %s refused: %s", asker.app, offer.host, why)
        return Refused(why)
    return Refused(unreachable)
