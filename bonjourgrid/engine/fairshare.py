"""Fair share between rival coordinators, with no central negotiator. Pure.

Theory of operation. Every coordinator publishes, in its ``_bjg-coord`` TXT record, how many
workers it holds (``w``), how many more it could use now (``d``) and its weight (``wt``, app.json
``weight``). Each coordinator reads its rivals' records, counts the volunteers it sees, and
computes the same split on its own (as Vac's VMs each compute their target shares from the
shares everyone publishes): a weighted max-min fair split of the machines, where nobody gets
more than it wants (``held + demand``) and the rest is shared in proportion to the weights.

Two rules follow, both applied by each coordinator to itself only:

* **Recruit** no further than its share (``recruit_cap``). A coordinator alone, or whose rivals
  want nothing more, may hold every machine: the split is work-conserving.
* **Release** idle workers, between tasks (a worker with nothing running, never a running
  task), while it holds more than its share and a rival holds less than its own share and
  wants more (``release_count``). It never releases below its share, so views that lag (TXT
  records update after the fact) can make a rival starve a little longer, but never make the
  shares oscillate. Idle volunteers count against the rivals' need: they take those first.

Integer split (D'Hondt): machines are dealt one at a time to the claim that still wants more
with the lowest ``(given + 1) / weight``; ties go to the claim that holds more now (no release
for the odd machine), then to the smaller app id, so every coordinator with the same view
computes the same split. Requirements are not looked at: every volunteer counts as one machine.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """One coordinator's position, as published: workers ``held``, ``demand`` for more now,
    and its ``weight`` (>= 1)."""

    app: str
    held: int
    demand: int
    weight: int = 1

    @property
    def wants(self) -> int:
        return self.held + self.demand


def shares(claims: Sequence[Claim], machines: int) -> dict[str, int]:
    """The weighted max-min fair split of ``machines`` among ``claims`` (by app id).

    Each share is at most the claim's ``wants``; the shares sum to ``min(machines, sum of
    wants)``; and no claim that wants more has a share below another's by more than one
    machine's worth of weight (``s_i / w_i <= (s_j + 1) / w_j`` whenever ``s_j < wants_j``).
    """
    from fractions import Fraction  # here: an idle volunteer never splits, nor loads it

    given = {c.app: 0 for c in claims}
    left = max(0, machines)
    heap = [(Fraction(1, max(1, c.weight)), -c.held, c.app, c) for c in claims if c.wants > 0]
    heapq.heapify(heap)
    while left > 0 and heap:
        _, held, app, c = heapq.heappop(heap)
        given[app] += 1
        left -= 1
        if given[app] < c.wants:
            heapq.heappush(heap, (Fraction(given[app] + 1, max(1, c.weight)), held, app, c))
    return given


def share_of(me: Claim, rivals: Sequence[Claim], machines: int) -> int:
    """My share of ``machines`` against ``rivals`` (my own record among them is ignored)."""
    others = [r for r in rivals if r.app != me.app]
    return shares([me, *others], machines)[me.app]


def starving(rivals: Sequence[Claim], split: dict[str, int]) -> int:
    """Machines the rivals below their share still want (their total shortfall)."""
    return sum(max(0, split.get(r.app, 0) - r.held) for r in rivals)


def recruit_cap(me: Claim, rivals: Sequence[Claim], machines: int) -> int:
    """How many workers I may hold at most right now: my share."""
    return share_of(me, rivals, machines)


def release_count(me: Claim, rivals: Sequence[Claim], machines: int, idle_machines: int) -> int:
    """How many idle workers to let go now: my surplus over my share, no more than the
    rivals' shortfall beyond what ``idle_machines`` (idle volunteers) already cover."""
    others = [r for r in rivals if r.app != me.app]
    split = shares([me, *others], machines)
    surplus = me.held - split[me.app]
    if surplus <= 0:
        return 0
    return max(0, min(surplus, starving(others, split) - max(0, idle_machines)))


def choose_release(idle: Sequence[str], count: int, keep: Collection[str] = ()) -> list[str]:
    """Which of my ``idle`` workers (nothing running; in my order of preference) to release:
    the first ``count`` not in ``keep`` (journal keepers stay)."""
    return [n for n in idle if n not in keep][: max(0, count)]
