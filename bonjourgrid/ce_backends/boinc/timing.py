"""The BOINC CE's timing constants, in two profiles chosen like ``bonjourgrid.config``.

``BJGRID_PROFILE=fast`` (tests on a virtual LAN) picks ``BoincTimings.fast()``, anything else
``BoincTimings.lan()``. They live here, not in ``Config``, because only this backend reads
them; each is named once with its reason. Figures measured against boinc-client 7.20.5 are in
docs/backend-boinc.md ("Latency knobs").
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from bonjourgrid.config import PROFILE_ENV


@dataclass(frozen=True)
class BoincTimings:
    next_rpc_delay: float = 30.0
    """Sent in every scheduler reply: a client comes back at least this often, work request
    included, even while BOINC's own work-fetch back-off (10 min doubling to a day) runs. The
    worker agent's nudges do the fast part; this is the backstop."""
    deadline: float = 3600.0
    """Issue -> report span of a task without a timeout; past it the result is lost and
    issued again (a volunteer that died without its daemon noticing)."""
    grace: float = 120.0
    """Added to a task's own timeout to make its deadline: job-file download, start-up in a
    slot, upload and the report RPC take ~10 s on an idle LAN and much more on a busy one."""
    lost_reissues: int = 3
    """Times a lost result (deadline, host lost) is issued again as the same attempt: a loss
    is the machine's fault, not the task's, so it does not use the task's retries; the bound
    stops a task that kills every machine it lands on."""
    queue_per_cpu: int = 1
    """Results a client may hold per CPU. 1 spreads a small bag over every volunteer and a
    lost volunteer takes one task with it; 2 hides the report->next-task gap (~6 s)."""
    poll: float = 0.5
    """Seconds between the project's deadline checks."""
    nudge_interval: float = 1.0
    """How often a volunteer's agent looks at its client: a GUI RPC ``project_update`` when it
    has results to report, or room while the project has work waiting. The client acts on it
    at its next 1 s poll instead of its 5 s scheduler poll or its back-offs."""
    attach_timeout: float = 45.0
    """Coordinator side: BoincAttach -> BoincAttached. Starting a client answers GUI RPC in
    < 1 s idle; a loaded 2-core box and the client's first start-up take longer (30 s cap in
    client.START_TIMEOUT)."""

    @classmethod
    def lan(cls) -> BoincTimings:
        return cls()

    @classmethod
    def fast(cls) -> BoincTimings:
        """Short spans for tests on a virtual LAN (a busy 2-core machine still fits them)."""
        return dataclasses.replace(
            cls(), next_rpc_delay=2.0, deadline=60.0, grace=30.0, queue_per_cpu=2
        )

    @classmethod
    def from_env(cls) -> BoincTimings:
        return cls.fast() if os.environ.get(PROFILE_ENV) == "fast" else cls.lan()


__all__ = ["BoincTimings"]
