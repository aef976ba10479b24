"""`bjgrid status` says which machines are busy with their owners' work (TXT ``p=busy``);
anything else a record says is not taken for busy."""

from __future__ import annotations

from types import SimpleNamespace

from bonjourgrid.daemon.status import _isolation


def machine(policy: str) -> SimpleNamespace:
    return SimpleNamespace(txt=SimpleNamespace(isolation="", isolation_reason="", policy=policy))


def test_owner_busy_is_reported() -> None:
    assert _isolation(machine("busy"))["owner"] == "busy"  # type: ignore[arg-type]
    assert _isolation(machine("ok"))["owner"] == "ok"  # type: ignore[arg-type]


def test_a_paused_machine_is_busy_and_said_paused() -> None:
    row = _isolation(machine("paused"))  # type: ignore[arg-type]
    assert (row["owner"], row["paused"]) == ("busy", True)
    assert _isolation(machine("busy"))["paused"] is False  # type: ignore[arg-type]


def test_an_unknown_policy_value_is_not_busy() -> None:
    for odd in ("", "BUSY", "busy ", "paused\x00"):
        assert _isolation(machine(odd))["owner"] == "ok"  # type: ignore[arg-type]
