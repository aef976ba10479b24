"""contrib/bjgrid.service is correct for a systemd *user* unit: no ordering on system
targets (a user manager ignores them), SIGTERM for the mDNS goodbyes, restart on failure,
installed into the user's default target, and the daemon itself not niced."""

from __future__ import annotations

import configparser
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "bjgrid.service"


def unit() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(strict=True, interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    cfg.read_string(UNIT.read_text())
    return cfg


def test_a_user_unit_orders_on_no_system_target() -> None:
    u = unit()["Unit"]
    system_targets = ("network-online.target", "network.target", "multi-user.target")
    for key in ("After", "Wants", "Requires", "Before"):
        assert not any(t in u.get(key, "") for t in system_targets), (key, u.get(key))


def test_the_service_runs_join_stops_with_sigterm_and_restarts() -> None:
    s = unit()["Service"]
    assert s["ExecStart"].split()[-1] == "join" and s["ExecStart"].startswith("%h/")
    assert s["KillSignal"] == "SIGTERM" and s["Restart"] == "on-failure"
    assert "Nice" not in s  # tasks are niced; heartbeats must not be
    assert unit()["Install"]["WantedBy"] == "default.target"
