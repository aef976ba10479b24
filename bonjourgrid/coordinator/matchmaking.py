"""Which volunteers can serve an app, and in which order to ask them. Pure."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from bonjourgrid.app.spec import Requirements


@dataclass(frozen=True)
class Offer:
    """What a volunteer offers, as advertised (TXT) or answered (Pong)."""

    node: str
    host: str
    addresses: tuple[str, ...]
    port: int
    state: str
    cpus: int
    slots: int
    mem_mb: int
    os: str
    arch: str
    backends: tuple[str, ...]
    load: int = 0
    app: str | None = None
    """The app a worker serves (None when idle)."""


def fits(offer: Offer, req: Requirements, backend: str) -> bool:
    """Whether one task with ``req`` could ever run on ``offer``."""
    return (
        backend in offer.backends
        and offer.slots >= req.cpus
        and (req.memory_mb == 0 or offer.mem_mb >= req.memory_mb)
        and (req.os is None or req.os == offer.os)
        and (req.arch is None or req.arch == offer.arch)
    )


def candidates(
    offers: Iterable[Offer],
    needs: Sequence[Requirements],
    backend: str,
    *,
    exclude: Collection[str] = (),
) -> list[Offer]:
    """Idle offers that fit at least one of ``needs``, best first: most slots, least load."""
    useful = [
        o
        for o in offers
        if o.state == "idle" and o.node not in exclude and any(fits(o, r, backend) for r in needs)
    ]
    return sorted(useful, key=lambda o: (o.load, -o.slots, -o.mem_mb, o.node))
