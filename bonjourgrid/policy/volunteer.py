"""A volunteer's own settings: owner policy, task sandbox, whom it trusts, where owner
activity comes from. Built once when ``bjgrid join`` starts, from ``volunteer.toml``
(``bonjourgrid.config.VolunteerFile``) and the command's options; options win.

    volunteer.toml  --+
                      +--> settings_from(...) --> VolunteerSettings --> NodeDaemon
    join options    --+        (policy, sandbox, trusted, activity source)

Defaults: the desktop policy (docs/owner-policy.md) and psutil as the activity source. In
the ``fast`` profile (tests on a virtual LAN, where namespace hosts share one /proc and the
test box's own terminals would look like an owner) the source is the file
``<state dir>/owner-activity`` and the policy's timings are short (``PolicyConfig.fast()``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bonjourgrid.app.signing import SigningError, TrustList
from bonjourgrid.ce_backends.embedded.sandbox_config import DEFAULT_SANDBOX, SandboxConfig
from bonjourgrid.config import VolunteerFile, VolunteerFileError
from bonjourgrid.policy.activity import ActivitySource, FileActivitySource, PsutilActivitySource
from bonjourgrid.policy.config import PolicyConfig, PolicyConfigError

OWNER_ACTIVITY_FILE = "owner-activity"
"""The fast profile's activity file, in the state dir: ``busy`` or ``idle``."""


@dataclass(frozen=True)
class VolunteerSettings:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sandbox: SandboxConfig = DEFAULT_SANDBOX
    trusted: TrustList | None = None
    """None: any app of the grid is accepted (a signature present must still be valid)."""
    owner_activity: Path | None = None
    """A file saying ``busy``/``idle``; None: the real machine (psutil)."""
    max_cpus: int = 0
    """Slots are capped at this (0: no cap)."""
    max_memory_mb: int = 0
    """Memory offered to tasks (advertised, and the default per-task cap); 0: not capped."""
    attributes: dict[str, object] = field(default_factory=dict)
    """Custom attributes for matchmaking (``[attributes]``), as written: the daemon keeps
    those ``discovery.txt.clean_attributes`` accepts and logs the others."""

    def activity_source(self, grid_root: int | None = None) -> ActivitySource:
        """Where owner activity is read; ``grid_root`` is the daemon's pid (psutil)."""
        if self.owner_activity is not None:
            return FileActivitySource(self.owner_activity)
        return PsutilActivitySource(grid_root if grid_root is not None else os.getpid())

    def slots(self, slots: int) -> int:
        return min(slots, self.max_cpus) if self.max_cpus else slots

    def memory_mb(self, total_mb: int) -> int:
        return min(total_mb, self.max_memory_mb) if self.max_memory_mb else total_mb


def sandbox_from(table: dict[str, object], base: SandboxConfig = DEFAULT_SANDBOX) -> SandboxConfig:
    """``base`` with the ``[sandbox]`` table applied; VolunteerFileError for a wrong entry."""
    fields = {f.name: f for f in dataclasses.fields(SandboxConfig)}
    changes: dict[str, object] = {}
    for name, value in table.items():
        f = fields.get(name)
        if f is None:
            raise VolunteerFileError(f"unknown sandbox setting {name!r}")
        kind = str(f.type)
        ok = (
            (kind == "bool" and isinstance(value, bool))
            or (kind == "bool | None" and isinstance(value, bool))
            or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
            or (kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool))
            or (kind == "str" and isinstance(value, str))
        )
        if not ok:
            raise VolunteerFileError(f"sandbox setting {name!r} must be of type {kind}")
        if kind in ("int", "float") and value < 0:  # type: ignore[operator]
            raise VolunteerFileError(f"sandbox setting {name!r} must be >= 0")
        changes[name] = value
    try:
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    except ValueError as e:
        raise VolunteerFileError(f"sandbox: {e}") from None


def settings_from(
    file: VolunteerFile,
    *,
    fast: bool,
    state_dir: Path,
    owner_activity: Path | None = None,
    max_cpus: int | None = None,
    max_memory_mb: int | None = None,
    trust: Sequence[Path] = (),
) -> VolunteerSettings:
    """The settings from the config file and join's options (which win). Raises
    VolunteerFileError with a readable reason."""
    try:
        policy = (PolicyConfig.fast() if fast else PolicyConfig.desktop()).replace(file.policy)
        if max_cpus is not None:
            policy = dataclasses.replace(policy, max_cpus=max_cpus)
    except PolicyConfigError as e:
        raise VolunteerFileError(f"[policy]: {e}") from None
    sandbox = sandbox_from(file.sandbox)
    if max_memory_mb:
        sandbox = dataclasses.replace(sandbox, memory_mb=min(sandbox.memory_mb, max_memory_mb))
    entries = list(file.trusted_users) if file.trusted_users is not None else None
    for path in trust:
        try:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        except OSError as e:
            raise VolunteerFileError(f"--trust {path}: {e.strerror}") from None
        entries = (entries or []) + lines
    try:
        trusted = TrustList.parse(entries) if entries is not None else None
    except SigningError as e:
        raise VolunteerFileError(str(e)) from None
    if owner_activity is None and file.owner_activity:
        owner_activity = Path(file.owner_activity)
    if owner_activity is None and fast:
        owner_activity = state_dir / OWNER_ACTIVITY_FILE
    return VolunteerSettings(
        policy=policy,
        sandbox=sandbox,
        trusted=trusted,
        owner_activity=owner_activity,
        max_cpus=policy.max_cpus,
        max_memory_mb=max_memory_mb or 0,
        attributes=dict(file.attributes),
    )


__all__ = ["OWNER_ACTIVITY_FILE", "VolunteerSettings", "sandbox_from", "settings_from"]
