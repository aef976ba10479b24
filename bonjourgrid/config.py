"""Every timing constant of the grid, named once, with its reason.

Two profiles, in the manner of memberlist's ``DefaultLANConfig``/``DefaultLocalConfig``:
``Config.lan()`` for real desktops on a LAN and ``Config.fast()`` for tests on a virtual LAN
on one loaded 2-core machine. Tests choose a profile; nobody monkey-patches constants.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

PROFILE_ENV = "BJGRID_PROFILE"


@dataclass(frozen=True)
class Config:
    # --- liveness (DESIGN.md: mDNS is for presence, heartbeats for liveness) ---
    heartbeat_interval: float = 0.5
    """Coordinator <-> worker heartbeat period on the control channel."""
    suspect_after: float = 1.5
    """Silence after which a peer is suspected dead (3 missed heartbeats)."""

    # --- reservations (DESIGN.md: leases vs failover) ---
    reserve_lease: float = 10.0
    """A worker's reservation lease, renewed by every heartbeat. It outlives suspicion +
    election + re-homing by a clear margin so workers are still reserved when a new
    coordinator reaches them, yet a dead coordinator never holds machines for long."""

    # --- failover (issue 4) ---
    takeover_stagger: float = 1.0
    """Extra wait per election rank: replica r claims the app only if, after r * stagger,
    no better-ranked replica coordinates it (so two replicas rarely claim the same term)."""
    rehome_grace: float = 4.0
    """After a takeover (or a restart), how long the new coordinator waits for the old
    workers to re-home before it requeues the attempts they were running."""

    # --- discovery ---
    browse_settle: float = 0.6
    """How long a fresh browser collects answers before it reports. A fresh browse resolves
    32 services in ~0.09 s here; mDNS responders delay replies by 20-120 ms (RFC 6762 6.3)."""
    interface_poll: float = 5.0
    """How often the daemon checks for address changes on its interfaces."""

    # --- control channel ---
    connect_timeout: float = 2.0
    """TCP connect + handshake timeout towards a peer."""
    ping_timeout: float = 1.0
    """How long `status` waits for a machine's control port before calling it unreachable."""

    # --- coordinator ---
    recruit_retry: float = 1.0
    """How often a coordinator short of workers looks again for idle machines."""
    recruit_timeout: float = 20.0
    """An app that has had no worker at all for this long fails ("no suitable volunteers")."""
    results_keep: float = 24 * 3600.0
    """How long coordinators keep an ended app's results (DESIGN.md contract: 24 h)."""

    @classmethod
    def lan(cls) -> Config:
        return cls()

    @classmethod
    def fast(cls) -> Config:
        """Short timings for tests on a virtual LAN (still tolerant of a busy 2-core box)."""
        return dataclasses.replace(
            cls(),
            heartbeat_interval=0.25,
            suspect_after=1.5,
            reserve_lease=8.0,
            takeover_stagger=1.0,
            rehome_grace=3.0,
            browse_settle=0.5,
            interface_poll=1.0,
            recruit_retry=0.3,
            recruit_timeout=10.0,
        )

    @classmethod
    def from_env(cls) -> Config:
        """The profile named by ``BJGRID_PROFILE`` (``lan`` by default, or ``fast``)."""
        name = os.environ.get(PROFILE_ENV, "lan")
        if name == "fast":
            return cls.fast()
        if name == "lan":
            return cls.lan()
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected 'lan' or 'fast'")
