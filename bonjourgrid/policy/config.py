"""The owner's policy settings and the resource caps they give tasks. Pure: no I/O.

Defaults follow HTCondor's desktop policy (a machine runs jobs when its owner's load is low and
the keyboard has been idle; jobs are suspended when the owner comes back, continued after
ContinueIdleTime = 5 min of idleness, preempted after MaxSuspendTime = 10 min; HighLoad 0.5 and
BackgroundLoad 0.3 CPUs) and BOINC's computing preferences (a computer is "in use" after input
in the last minutes; tasks use at most 50 % of memory while in use, 90 % when idle; disk use
bounded, some disk always left free).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass


class PolicyConfigError(ValueError):
    """A policy setting is unknown or out of range; the message names it."""


@dataclass(frozen=True)
class PolicyConfig:
    high_load: float = 0.5
    """Owner CPU load (in CPUs, the grid's own task processes excluded) at which the owner
    counts as active (HTCondor HighLoad)."""
    background_load: float = 0.3
    """Owner load at or below which the machine counts as idle again (HTCondor BackgroundLoad).
    Between the two the previous judgement stands, so a load near one threshold does not flap."""
    input_busy_within: float = 60.0
    """Keyboard/mouse input this recent (seconds) means the owner is at the machine
    (HTCondor KeyboardBusy: input in the last minute)."""
    resume_after: float = 300.0
    """Idle time before the machine is offered again and suspended tasks continue
    (HTCondor ContinueIdleTime)."""
    max_suspension: float = 600.0
    """Suspended tasks are given back to their coordinator after this long (MaxSuspendTime)."""
    poll_interval: float = 0.5
    """How often owner activity is sampled while tasks run (or are stopped): they are
    suspended within this (< 1 s) of the owner's return."""
    idle_poll_interval: float = 5.0
    """How often it is sampled while no task runs, when a late verdict costs only a refused
    reservation a little later (HTCondor's startd polls every POLLING_INTERVAL = 5 s). A task
    that starts is noticed within ``poll_interval``: then sampling is fast again."""
    max_cpus: int = 0
    """CPUs tasks may use; 0: all of them."""
    memory_fraction_in_use: float = 0.5
    """Share of memory tasks may use while the owner is around (BOINC: 50 %)."""
    memory_fraction_idle: float = 0.9
    """Share of memory tasks may use while the machine is idle (BOINC: 90 %)."""
    max_disk_mb: int = 10240
    """Disk tasks may fill, in MB."""
    min_free_disk_mb: int = 1024
    """Disk always left free for the owner, in MB."""

    def __post_init__(self) -> None:
        if not 0 <= self.background_load <= self.high_load:
            raise PolicyConfigError("background_load must be between 0 and high_load")
        for name in ("input_busy_within", "resume_after", "max_suspension"):
            if getattr(self, name) < 0:
                raise PolicyConfigError(f"{name} must be >= 0")
        if self.poll_interval <= 0:
            raise PolicyConfigError("poll_interval must be > 0")
        if self.idle_poll_interval < self.poll_interval:
            raise PolicyConfigError("idle_poll_interval must be >= poll_interval")
        for name in ("memory_fraction_in_use", "memory_fraction_idle"):
            if not 0 < getattr(self, name) <= 1:
                raise PolicyConfigError(f"{name} must be in (0, 1]")
        for name in ("max_cpus", "max_disk_mb", "min_free_disk_mb"):
            if getattr(self, name) < 0:
                raise PolicyConfigError(f"{name} must be >= 0")

    @classmethod
    def desktop(cls) -> PolicyConfig:
        """The defaults: a desktop whose owner comes first."""
        return cls()

    @classmethod
    def fast(cls) -> PolicyConfig:
        """Short timings for tests on a virtual LAN (injected activity, no real owner)."""
        return cls(
            input_busy_within=1.0,
            resume_after=1.0,
            max_suspension=5.0,
            poll_interval=0.2,
            idle_poll_interval=1.0,
        )

    def replace(self, settings: Mapping[str, object]) -> PolicyConfig:
        """These settings with ``settings`` (e.g. the ``[policy]`` table of the volunteer's
        config file) applied; unknown names and wrong types raise PolicyConfigError."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, object] = {}
        for name, value in settings.items():
            if name not in fields:
                raise PolicyConfigError(f"unknown policy setting {name!r}")
            want = int if fields[name].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PolicyConfigError(f"policy setting {name!r} must be a number")
            if want is int and not isinstance(value, int):
                raise PolicyConfigError(f"policy setting {name!r} must be an integer")
            changes[name] = want(value)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Caps:
    """What tasks together may use on this machine right now."""

    cpus: int
    memory_mb: int
    disk_mb: int


def task_caps(
    config: PolicyConfig,
    *,
    cpus: int,
    memory_mb: int,
    free_disk_mb: int,
    owner_present: bool,
) -> Caps:
    """The caps for a machine with ``cpus`` CPUs, ``memory_mb`` of memory and ``free_disk_mb``
    of free disk (the grid's own use not counted as used). Never below zero."""
    use_cpus = min(cpus, config.max_cpus) if config.max_cpus else cpus
    share = config.memory_fraction_in_use if owner_present else config.memory_fraction_idle
    disk = min(config.max_disk_mb, free_disk_mb - config.min_free_disk_mb)
    return Caps(max(0, use_cpus), max(0, int(memory_mb * share)), max(0, disk))
