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
    owner_busy: bool = False
    """An idle volunteer whose owner is at it (TXT ``p=busy``): it refuses reservations, so
    nothing fits it now; seen only to say why an app waits."""


def has_attributes(offer: Offer, wanted: Iterable[tuple[str, str]]) -> bool:
    """Whether ``offer`` declares every ``(name, value)`` in ``wanted``, values equal."""
    mine = dict(offer.attributes)
    return all(mine.get(k) == v for k, v in wanted)


def fits(offer: Offer, req: Requirements, backend: str) -> bool:
    """Whether one task with ``req`` could ever run on ``offer`` (``_checks`` all pass)."""
    return (
        not offer.owner_busy
        and backend in offer.backends
        and offer.slots >= req.cpus
        and (req.memory_mb == 0 or offer.mem_mb >= req.memory_mb)
        and (req.os is None or req.os == offer.os)
        and (req.arch is None or req.arch == offer.arch)
        and (not req.attributes or has_attributes(offer, req.attributes))
    )


def _capacity(o: Offer) -> int:
    """CPUs' worth of tasks the volunteer can take at all: its free slots when idle, its
    CPUs when it serves another app now (its slots then are what that app left)."""
    return o.slots if o.state == "idle" else max(o.slots, o.cpus)


def _checks(req: Requirements, backend: str) -> list[tuple[str, Callable[[Offer], bool]]]:
    """Each requirement as (how to name it, test on one offer, whatever the volunteer does
    now), in the order they are explained to the user."""
    out: list[tuple[str, Callable[[Offer], bool]]] = [
        (f"backend {backend}", lambda o: backend in o.backends)
    ]
    if req.os is not None:
        want_os = req.os
        out.append((f"os={want_os}", lambda o: o.os == want_os))
    if req.arch is not None:
        want_arch = req.arch
        out.append((f"arch={want_arch}", lambda o: o.arch == want_arch))
    out.append((f"cpus>={req.cpus}", lambda o: _capacity(o) >= req.cpus))
    if req.memory_mb:
        out.append((f"memory_mb>={req.memory_mb}", lambda o: o.mem_mb >= req.memory_mb))
    out += [(f"{k}={v}", _attribute_check(k, v)) for k, v in req.attributes]
    return out


def _attribute_check(name: str, value: str) -> Callable[[Offer], bool]:
    return lambda o: has_attributes(o, ((name, value),))


def capable(offer: Offer, req: Requirements, backend: str) -> bool:
    """Whether ``offer`` could run a task with ``req`` once free (owner away, no other app)."""
    return all(check(offer) for _, check in _checks(req, backend))


def unmet(offers: Sequence[Offer], req: Requirements, backend: str) -> str | None:
    """None if some offer could serve ``req`` (now or once free); else what nobody meets, for
    a user to read, with counts: ``no volunteer has memory_mb>=64000 (6 seen)``, or for
    requirements each met but never together ``... together (6 seen: 2 have cpus>=4, ...)``."""
    seen = len(offers)
    if any(capable(o, req, backend) for o in offers):
        return None
    if not seen:
        return "no volunteer seen yet"
    checks = _checks(req, backend)
    nobody = [name for name, check in checks if not any(check(o) for o in offers)]
    if nobody:
        return f"no volunteer has {', '.join(nobody)} ({seen} seen)"
    partial = [(name, sum(check(o) for o in offers)) for name, check in checks]
    together = ", ".join(name for name, _ in checks)
    counts = ", ".join(f"{n} have {name}" for name, n in partial if n < seen)
    return f"no volunteer has {together} together ({seen} seen: {counts})"


def waiting_reason(
    offers: Sequence[Offer],
    req: Requirements,
    backend: str,
    *,
    app: str,
    mine: Collection[str] = (),
    refused: Collection[str] = (),
    fair_capped: bool = False,
) -> str | None:
    """Why a task with ``req`` of ``app`` has no volunteer now, naming what is true; None
    when an idle volunteer fits and is free to ask (recruitment is under way) or when every
    capable volunteer already works for this app (the task waits for a slot, as queued).

    ``mine``: nodes this app holds; ``refused``: nodes that refused it lately;
    ``fair_capped``: fair share stops this app from asking for more machines now.
    """
    why = unmet(offers, req, backend)
    if why is not None:
        return why
    able = [o for o in offers if capable(o, req, backend) and o.node not in mine]
    if not able:
        return None
    owner = [o for o in able if o.owner_busy]
    others = [o for o in able if o.state == "worker" and o.app != app]
    said_no = [o for o in able if o.node in refused and not o.owner_busy and o.state == "idle"]
    free = [o for o in able if o.state == "idle" and not o.owner_busy and o.node not in refused]
    if free and not fair_capped:
        return None
    parts: list[str] = []
    if owner:
        parts.append(f"{len(owner)} busy with their owners' work")
    if others:
        parts.append(f"{len(others)} held by other apps")
    if said_no:
        parts.append(f"{len(said_no)} refused this app")
    if free:
        parts.append(f"{len(free)} idle but this app is at its fair share")
    n = len(able)
    head = f"{n} volunteer{'s' if n != 1 else ''} could run it"
    tail = " (fair share)" if others or fair_capped else ""
    return f"{head}: {', '.join(parts)}{tail}" if parts else None


def fit_rows(
    offers: Sequence[Offer], tasks: Sequence[tuple[str, Requirements]], backend: str, *, app: str
) -> list[dict[str, object]]:
    """Per task ``(id, requirements)``: how many volunteers fit it now (``fit_now``), how
    many could once free (``could``), and why it would wait ("" when one fits now). For
    ``submit --dry-run``: nothing is asked of anyone."""
    rows: list[dict[str, object]] = []
    for task_id, req in tasks:
        now = sum(1 for o in offers if o.state == "idle" and fits(o, req, backend))
        could = sum(1 for o in offers if capable(o, req, backend))
        why = "" if now else (waiting_reason(offers, req, backend, app=app) or "")
        rows.append({"id": task_id, "fit_now": now, "could": could, "reason": why})
    return rows


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
