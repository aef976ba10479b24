"""Every timing constant of the grid, named once, with its reason.

Two profiles, in the manner of memberlist's ``DefaultLANConfig``/``DefaultLocalConfig``:
``Config.lan()`` for real desktops on a LAN and ``Config.fast()`` for tests on a virtual LAN
on one loaded 2-core machine. Tests choose a profile; nobody monkey-patches constants.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the `tomli` dependency
    import tomli as tomllib

PROFILE_ENV = "BJGRID_PROFILE"
TIMING_ENV = "BJGRID_TIMING"
"""``name=seconds,...``: override timings of the chosen profile (a lab on a slow link, a
test that needs a long suspicion), e.g. ``BJGRID_TIMING=suspect_after=20,reserve_lease=30``."""


@dataclass(frozen=True)
class Config:
    profile: str = "lan"
    """The profile's name: ``lan`` or ``fast`` (the owner policy's defaults follow it)."""

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
    max_lease: float = 120.0
    """The longest lease this volunteer grants (seconds): a Reserve or Heartbeat asking for
    more is clipped to it, so no coordinator holds the machine long after it goes silent."""

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
    """A rival's fair-share claim that no volunteer has served for twice this long is taken
    for a record left by a dead coordinator (engine/app.py ``rival_claims``). Apps no longer
    fail after it: they wait for volunteers unless they set a ``wait_timeout`` (app.json)."""
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
            profile="fast",
            heartbeat_interval=0.25,
            suspect_after=1.5,
            reserve_lease=8.0,
            max_lease=20.0,
            takeover_stagger=1.0,
            rehome_grace=3.0,
            browse_settle=0.5,
            interface_poll=1.0,
            recruit_retry=0.3,
            recruit_timeout=10.0,
        )

    @classmethod
    def from_env(cls) -> Config:
        """The profile named by ``BJGRID_PROFILE`` (``lan`` by default, or ``fast``), with
        the overrides of ``BJGRID_TIMING``."""
        name = os.environ.get(PROFILE_ENV, "lan")
        if name == "fast":
            base = cls.fast()
        elif name == "lan":
            base = cls.lan()
        else:
            raise ValueError(f"{PROFILE_ENV}={name!r}: expected 'lan' or 'fast'")
        return base.with_timings(os.environ.get(TIMING_ENV, ""))

    def with_timings(self, text: str) -> Config:
        """This config with ``name=seconds,...`` overrides (ValueError naming a bad entry)."""
        timings = {f.name for f in dataclasses.fields(self) if f.type in ("float", float)}
        changes: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            name = name.strip()
            if name not in timings:
                raise ValueError(
                    f"{TIMING_ENV}: {name!r} is not a timing (one of {', '.join(sorted(timings))})"
                )
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"{TIMING_ENV}: {item!r}: expected {name}=<seconds>") from None
            if not seconds >= 0 or seconds == float("inf"):
                raise ValueError(f"{TIMING_ENV}: {item!r}: seconds must be finite and >= 0")
            changes[name] = seconds
        return dataclasses.replace(self, **changes) if changes else self


# --- the volunteer's own settings (``volunteer.toml`` in the config dir) ------------------

VOLUNTEER_KEYS = ("trusted_users", "owner_activity", "policy", "sandbox", "attributes")


class VolunteerFileError(ValueError):
    """The volunteer's config file cannot be read or has a wrong entry; the message says which."""


@dataclass(frozen=True)
class VolunteerFile:
    """What ``volunteer.toml`` says, checked for shape only (the policy and sandbox tables are
    checked by ``PolicyConfig.replace`` and the sandbox's settings when the daemon starts)::

        trusted_users = ["bjgrid-user-pub-v1 alice 3f...", "9a1c...(fingerprint)"]
        owner_activity = "/run/bjgrid-owner"   # a file saying busy/idle, instead of psutil
        [policy]
        max_suspension = 600
        [sandbox]
        memory_mb = 2048
        [attributes]                           # matched by app.json requirements.attributes
        site = "lab2"
    """

    trusted_users: tuple[str, ...] | None = None
    """None: the key is absent (any app of the grid is accepted)."""
    owner_activity: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    """Custom attributes advertised in the TXT record (checked by txt.clean_attributes)."""


def parse_volunteer_file(text: str, source: str = "volunteer.toml") -> VolunteerFile:
    """Parse the volunteer's config file; VolunteerFileError names a wrong entry."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise VolunteerFileError(f"{source}: {e}") from None
    unknown = sorted(set(doc) - set(VOLUNTEER_KEYS))
    if unknown:
        raise VolunteerFileError(f"{source}: unknown setting {unknown[0]!r}")
    trusted = doc.get("trusted_users")
    if trusted is not None and (
        not isinstance(trusted, list) or not all(isinstance(t, str) for t in trusted)
    ):
        raise VolunteerFileError(f"{source}: trusted_users must be a list of strings")
    activity = doc.get("owner_activity")
    if activity is not None and not isinstance(activity, str):
        raise VolunteerFileError(f"{source}: owner_activity must be a file path")
    tables: dict[str, dict[str, Any]] = {}
    for name in ("policy", "sandbox", "attributes"):
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise VolunteerFileError(f"{source}: [{name}] must be a table")
        tables[name] = table
    return VolunteerFile(
        trusted_users=None if trusted is None else tuple(trusted),
        owner_activity=activity,
        policy=tables["policy"],
        sandbox=tables["sandbox"],
        attributes=tables["attributes"],
    )


def read_volunteer_file(path: Path) -> VolunteerFile:
    """The volunteer's config file at ``path``; an absent file means every default."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return VolunteerFile()
    except OSError as e:
        raise VolunteerFileError(f"{path}: {e.strerror}") from None
    return parse_volunteer_file(text, str(path))
