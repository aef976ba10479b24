"""What one coordinator sees of the LAN for fair share (the arithmetic is fairshare.py).

The volunteers seen and how many are idle, the rival apps' claims corrected by what the
volunteers themselves advertise, and which idle workers to let go while this app holds more
than its share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from bonjourgrid.config import Config
from bonjourgrid.coordinator import fairshare
from bonjourgrid.coordinator.matchmaking import Offer


class FairShareView:
    """Fair share as seen by the coordinator of ``app_id``: volunteers from ``offers``,
    rivals' claims from ``claims`` (their ``_bjg-coord`` records)."""

    def __init__(
        self,
        app_id: str,
        config: Config,
        offers: Callable[[], list[Offer]],
        claims: Callable[[], list[fairshare.Claim]],
    ) -> None:
        self.app_id = app_id
        self.config = config
        self._offers = offers
        self._claims = claims
        """Other apps' fair-share claims, from their ``_bjg-coord`` records (fairshare.py)."""
        self._hungry_since: dict[str, float] = {}
        """Rival app -> since when no volunteer serves it (a record a dead coordinator left)."""

    def machines(self) -> tuple[int, int]:
        """Volunteers seen (idle or serving someone), and how many of them are idle."""
        states = [o.state for o in self._offers() if not o.owner_busy]  # theirs for now
        return sum(s in ("idle", "worker") for s in states), states.count("idle")

    def rival_claims(self) -> list[fairshare.Claim]:
        """The other apps' claims, each with the workers the volunteers themselves say serve
        it (their TXT is current, a coordinator's ``w`` lags). A rival that no volunteer has
        served for twice ``recruit_timeout`` is a record left by a dead coordinator (a live
        one fails its app by then): ignored."""
        now = time.monotonic()
        held: dict[str, int] = {}
        for o in self._offers():
            if o.state == "worker" and o.app is not None:
                held[o.app] = held.get(o.app, 0) + 1
        out: list[fairshare.Claim] = []
        for c in self._claims():
            if c.app == self.app_id:
                continue
            n = held.get(c.app, 0)
            if n:
                self._hungry_since.pop(c.app, None)
            elif now - self._hungry_since.setdefault(c.app, now) > 2 * self.config.recruit_timeout:
                continue
            out.append(fairshare.Claim(c.app, n, c.demand, c.weight))
        return out

    def to_release(
        self,
        me: fairshare.Claim,
        rivals: list[fairshare.Claim],
        idle: list[str],
        keep: Collection[str],
    ) -> list[str]:
        """The idle workers (between tasks) to let go, none of ``keep``: as many as this app
        holds above its fair share and the ``rivals`` below their own share want."""
        machines, idle_machines = self.machines()
        count = fairshare.release_count(me, rivals, machines, idle_machines)
        if count <= 0:
            return []
        return fairshare.choose_release(idle, count, keep)
