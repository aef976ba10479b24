"""How many machines an app wants, whom to ask, and whom to let go (recruit and release by
one rule, and the fair share between rival coordinators).

* More workers are wanted only for ready tasks no slot covers (the ``Placement`` says which),
  up to ``workers`` — and no further than the app's fair share while rivals want machines.
* An idle worker is released as soon as no ready task it could run is left (with a strategy
  that ``releases_idle``), and one above the fair share is released to a starving rival.
* A replica-set member whose link was lost is asked back once it is seen idle.
"""

from __future__ import annotations

from bonjourgrid.engine import fairshare, scheduling
from bonjourgrid.engine.app_core import AppCore
from bonjourgrid.engine.app_events import Recruit
from bonjourgrid.engine.matchmaking import Offer
from bonjourgrid.engine.waiting import Waiting
from bonjourgrid.states.taskstate import TERMINAL_STATES


class Demand:
    """The app's view of the LAN (``offers``, rivals' ``claims``) and what it wants of it."""

    def __init__(self, core: AppCore, waiting: Waiting) -> None:
        self._core = core
        self._waiting = waiting
        self.offers: tuple[Offer, ...] = ()
        self.claims: tuple[fairshare.Claim, ...] = ()
        self._hungry_since: dict[str, float] = {}
        """Rival app -> since when no volunteer serves it (a record a dead coordinator left)."""

    def wanted_workers(self, *, fair: bool = True) -> int:
        """More volunteers to ask for now; with ``fair``, no further than this app's fair
        share while rivals want machines too (fairshare.recruit_cap)."""
        core = self._core
        spec, table, ledger = core.spec, core.table, core.ledger
        limit = spec.workers if spec.workers is not None else len(spec.tasks)
        if fair and (rivals := self.rival_claims()):
            limit = min(limit, fairshare.recruit_cap(self.claim(), rivals, self.machines()[0]))
        unplaced = core.placement.unplaced(len(table.ready()), len(table.running()), ledger)
        return scheduling.wanted_workers(
            unplaced=unplaced,
            recruiting=len(ledger.recruiting),
            linked=len(ledger.workers),
            limit=limit,
        )

    def recruit(self, now: float) -> None:
        core = self._core
        ledger = core.ledger
        back = core.timing.refusal_backoff
        busy = set(ledger.workers) | ledger.recruiting
        busy |= {n for n, t in ledger.refused.items() if now - t < back}
        self._recall_members(busy)
        wanted = self.wanted_workers()
        if wanted <= 0:
            return
        needs = [
            core.spec.task(r.id).requirements
            for r in core.table.records()
            if r.state not in TERMINAL_STATES
        ]
        for o in scheduling.to_ask(
            core.app, self.offers, needs, core.placement.name, exclude=busy, wanted=wanted
        ):
            ledger.asking(o.node)
            core.emit(Recruit(o, core.term))

    def _recall_members(self, busy: set[str]) -> None:
        """Reserve again a replica-set member whose link was lost (its lease ran out behind a
        partition) once it is seen idle: it kept its copy's votes, and the set may need its
        acknowledgement to commit or to change. A member that said it holds nothing is not
        asked back (the set drops it): it may have restarted and forgotten a vote."""
        core = self._core
        replicas = core.replicas
        lost = [
            n for n in replicas.ranks if n != core.me and n not in busy and n not in replicas.empty
        ]
        if not lost:
            return
        for o in self.offers:
            if o.node in lost and o.state == "idle" and not o.owner_busy:
                core.ledger.asking(o.node)
                core.emit(Recruit(o, core.term))

    def release_useless(self, now: float) -> None:
        core = self._core
        if not core.placement.releases_idle:
            return  # the middleware knows which machine is idle, we do not: keep all
        ledger = core.ledger
        idle = ledger.idle()
        held = ledger.held()
        offers = [ledger.workers[n].offer for n in idle]
        ready = self._waiting.ready_fitting(core.table, offers, core.placement.name)
        for node in scheduling.releasable(
            ready_tasks=ready, idle_workers=idle, replicas=core.replicas.ranks
        ):
            if node not in held:
                core.release(node, "no task left for this worker")
        rivals = self.rival_claims()
        if not rivals:
            return
        idle = ledger.idle()
        keep = set(core.replicas.ranks) | ledger.held()
        machines, idle_machines = self.machines()
        count = fairshare.release_count(self.claim(), rivals, machines, idle_machines)
        for node in fairshare.choose_release(idle, count, keep) if count > 0 else []:
            ledger.refuse(node, now)  # do not ask it back at once
            core.release(node, "fair share: a rival coordinator needs machines")

    # --- fair share (engine/fairshare.py) --------------------------------------------------

    def machines(self) -> tuple[int, int]:
        """Volunteers seen (idle or serving someone), and how many of them are idle."""
        states = [o.state for o in self.offers if not o.owner_busy]
        return sum(s in ("idle", "worker") for s in states), states.count("idle")

    def claim(self) -> fairshare.Claim:
        """This app's claim, as published in its coordinator record (TXT ``w``/``d``/``wt``)."""
        core = self._core
        more = self.wanted_workers(fair=False) + len(core.ledger.recruiting)
        return fairshare.Claim(
            core.app, len(core.ledger.workers), min(more, self.machines()[0]), core.spec.weight
        )

    def rival_claims(self) -> list[fairshare.Claim]:
        """The other apps' claims with the workers the volunteers say serve each; a rival no
        volunteer served for twice ``recruit_timeout`` is a dead coordinator's record."""
        core = self._core
        now = core.now
        held: dict[str, int] = {}
        for o in self.offers:
            if o.state == "worker" and o.app is not None:
                held[o.app] = held.get(o.app, 0) + 1
        out: list[fairshare.Claim] = []
        for c in self.claims:
            if c.app == core.app:
                continue
            n = held.get(c.app, 0)
            if n:
                self._hungry_since.pop(c.app, None)
            elif now - self._hungry_since.setdefault(c.app, now) > 2 * core.timing.recruit_timeout:
                continue
            out.append(fairshare.Claim(c.app, n, c.demand, c.weight))
        return out
