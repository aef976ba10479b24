"""The coordinator's decisions, without I/O: where ready tasks go, how many workers to recruit,
which volunteers to ask first, which workers to let go, which workers keep the journal.

``AppCoordinator`` (the asyncio shell) and the simulation tier (``bonjourgrid.sim``) both call
these functions, so the simulator checks the product's own recruiter and scheduler.

Rules, in one place:

* **Placement**: ready tasks in spec order; each goes to the ready worker with the most free
  CPUs that fits its requirements (ties by node id), taking ``cpus`` slots there.
* **Recruiting**: more workers only for READY tasks that found no free slot, capped by the app's
  ``workers`` limit; so a recruit always has a task waiting for it.
* **Releasing**: a worker with nothing running is released only when no task is READY (pending
  tasks turn ready where their predecessors ran), and never while it keeps the journal.
* **Asking**: idle volunteers that fit some unfinished task, least loaded and largest first;
  rival coordinators rank alike, so a per-app hash breaks ties and spreads their first asks.
* **Replicas**: the journal is kept by the first ``k`` ready workers in a stable order (the
  order they were staged in), replaced from the others when one is lost; the set moves toward
  this choice one member at a time, as faulttolerance/quorum.py agrees (``next_members``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from bonjourgrid.app.spec import Requirements, TaskSpec
from bonjourgrid.engine.matchmaking import Offer, candidates, fits


@dataclass(frozen=True)
class WorkerSlots:
    """What placement needs to know about one recruited worker."""

    node: str
    free: int
    offer: Offer | None
    ready: bool = True


def place(
    ready: Sequence[TaskSpec], workers: Sequence[WorkerSlots], backend: str
) -> list[tuple[str, str]]:
    """``(task id, worker node)`` for every ready task that fits a free slot now."""
    free = {w.node: w.free for w in workers if w.ready}
    offers = {w.node: w.offer for w in workers if w.ready}
    out: list[tuple[str, str]] = []
    for task in ready:
        if not any(n > 0 for n in free.values()):
            break  # nothing more can be placed until a slot frees up
        need = task.requirements.cpus
        usable = [
            node
            for node, n in free.items()
            if n >= need and (o := offers[node]) is not None and fits(o, task.requirements, backend)
        ]
        if not usable:
            continue
        node = max(usable, key=lambda k: (free[k], k))
        free[node] -= need
        out.append((task.id, node))
    return out


def wanted_workers(*, unplaced: int, recruiting: int, linked: int, limit: int) -> int:
    """How many more volunteers to ask for now (see the recruiting rule)."""
    room = limit - linked - recruiting
    return max(0, min(unplaced - recruiting, room))


def to_ask(
    app_id: str,
    offers: Iterable[Offer],
    needs: Sequence[Requirements],
    backend: str,
    *,
    exclude: Collection[str],
    wanted: int,
) -> list[Offer]:
    """The ``wanted`` best idle volunteers to ask, in order."""
    found = candidates(offers, needs, backend, exclude=exclude)
    found.sort(key=lambda o: (o.load, -o.slots, spread(app_id, o.node)))
    return found[:wanted]


def spread(app_id: str, node: str) -> str:
    """A per-app tie-break, so rivals with equal views do not all ask the same machine."""
    return hashlib.sha256(f"{app_id}/{node}".encode()).hexdigest()


def releasable(
    *, ready_tasks: int, idle_workers: Sequence[str], replicas: Collection[str]
) -> list[str]:
    """Workers (with nothing running) that may be released now."""
    if ready_tasks:
        return []
    return [n for n in idle_workers if n not in replicas]


def choose_replicas(current: Sequence[str], staged: Sequence[str], k: int) -> list[str]:
    """The journal keepers: the current ones that are still staged, topped up in staged order."""
    live = set(staged)
    keep = [n for n in current if n in live][:k]
    for n in staged:
        if len(keep) >= k:
            break
        if n not in keep:
            keep.append(n)
    return keep
