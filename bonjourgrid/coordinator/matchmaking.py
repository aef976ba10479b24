"""Which volunteers can serve an app, in which order to ask them, and — when none can — which
requirement nobody meets. Pure.

A task's requirements (app.json ``requirements``, merged per task) are matched against what a
volunteer advertises in its TXT record: free slots >= ``cpus``, memory >= ``memory_mb``, equal
``os``/``arch`` when given, the app's backend installed, and every custom attribute present with
exactly the asked value (the volunteer's ``attributes`` table, TXT ``x-<name>`` keys).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
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
    attributes: tuple[tuple[str, str], ...] = ()
    """Custom attributes from the volunteer's config (sorted by name)."""


def has_attributes(offer: Offer, wanted: Iterable[tuple[str, str]]) -> bool:
    """Whether ``offer`` declares every ``(name, value)`` in ``wanted``, values equal."""
    mine = dict(offer.attributes)
    return all(mine.get(k) == v for k, v in wanted)


def fits(offer: Offer, req: Requirements, backend: str) -> bool:
    """Whether one task with ``req`` could ever run on ``offer`` (``_checks`` all pass)."""
    return (
        backend in offer.backends
        and offer.slots >= req.cpus
        and (req.memory_mb == 0 or offer.mem_mb >= req.memory_mb)
        and (req.os is None or req.os == offer.os)
        and (req.arch is None or req.arch == offer.arch)
        and (not req.attributes or has_attributes(offer, req.attributes))
    )


def _checks(req: Requirements, backend: str) -> list[tuple[str, Callable[[Offer], bool]]]:
    """Each requirement as (how to name it, test on one offer), in the order they are
    explained to the user."""
    out: list[tuple[str, Callable[[Offer], bool]]] = [
        (f"backend {backend}", lambda o: backend in o.backends)
    ]
    if req.os is not None:
        want_os = req.os
        out.append((f"os={want_os}", lambda o: o.os == want_os))
    if req.arch is not None:
        want_arch = req.arch
        out.append((f"arch={want_arch}", lambda o: o.arch == want_arch))
    out.append((f"cpus>={req.cpus}", lambda o: o.slots >= req.cpus))
    if req.memory_mb:
        out.append((f"memory_mb>={req.memory_mb}", lambda o: o.mem_mb >= req.memory_mb))
    out += [(f"{k}={v}", _attribute_check(k, v)) for k, v in req.attributes]
    return out


def _attribute_check(name: str, value: str) -> Callable[[Offer], bool]:
    return lambda o: has_attributes(o, ((name, value),))


def unmet(offers: Sequence[Offer], req: Requirements, backend: str) -> str | None:
    """None if some offer fits ``req``; else what nobody meets, for a user to read, e.g.
    ``no volunteer has memory_mb>=64000 (6 seen)``."""
    seen = len(offers)
    if any(fits(o, req, backend) for o in offers):
        return None
    if not seen:
        return "no volunteer seen yet"
    checks = _checks(req, backend)
    nobody = [name for name, check in checks if not any(check(o) for o in offers)]
    if nobody:
        return f"no volunteer has {', '.join(nobody)} ({seen} seen)"
    together = ", ".join(name for name, _ in checks)
    return f"no volunteer has {together} together ({seen} seen)"


def rank(offer: Offer) -> tuple[int, int, int, int]:
    """Sort key, best first: least loaded, most free slots, most CPUs (the faster machine
    we can tell from its record), most memory."""
    return (offer.load, -offer.slots, -offer.cpus, -offer.mem_mb)


def candidates(
    offers: Iterable[Offer],
    needs: Sequence[Requirements],
    backend: str,
    *,
    exclude: Collection[str] = (),
) -> list[Offer]:
    """Idle offers that fit at least one of ``needs``, best first (``rank``, then node id)."""
    useful = [
        o
        for o in offers
        if o.state == "idle" and o.node not in exclude and any(fits(o, r, backend) for r in needs)
    ]
    return sorted(useful, key=lambda o: (*rank(o), o.node))
