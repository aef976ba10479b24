"""A hostile peer on a real (virtual) LAN advertising addresses that are no peer's — our own
loopback, the unspecified address, a multicast group, IPv4 loopback dressed as IPv6 — beside its
real ones: the browsing host's view keeps only the real ones, scoped to the link (real mDNS,
real zeroconf on both sides; the pure rule: tests/security/test_learned_addresses.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import GRID

from bonjourgrid.testbed import Host

pytestmark = pytest.mark.vlan

HERE = Path(__file__).parent
B = "b" * 20
C = "c" * 20
BOGUS = ["127.0.0.1", "0.0.0.0", "224.0.0.251", "::1", "::ffff:127.0.0.1", "ff02::fb"]


def rogue(host: Host, advertise: list[str]) -> subprocess.Popen[str]:
    txt = {"v": 1, "g": GRID, "n": C, "h": host.name, "c": 2, "s": 2, "m": 9, "o": "linux",
           "a": "x86_64", "b": "", "p": "ok", "l": 0}  # fmt: skip
    cfg = {
        "address": host.address,
        "advertise": advertise,
        "ipv6_index": 2,  # eth0 is the namespace's second interface, after lo
        "type": "_bjg-idle._tcp.local.",
        "label": f"rogue-{C}",
        "port": 9,
        "txt_hex": [f"{k}={v}".encode().hex() for k, v in txt.items()],
    }
    proc = host.popen(
        [sys.executable, str(HERE / "raw_publisher.py"), json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"ev": "ready"}
    return proc


def test_a_rogues_loopback_and_multicast_addresses_never_enter_the_view(
    vlan: Any, driver: Any
) -> None:
    ha, hb = vlan(2, ipv6=True).hosts
    real = [ha.address, ha.links[0].ipv6]
    proc = rogue(ha, [*real, *BOGUS])
    try:
        b = driver(hb, B)
        b.call("start")
        b.wait_for(
            lambda e: e["ev"] == "view" and any(m["node"] == C for m in e["machines"]),
            timeout=10,
        )
        b.call("settle", seconds=1.0)
        views = [e for e in b.events if e["ev"] == "view"]
        addresses = {
            a for e in views for m in e["machines"] if m["node"] == C for a in m["addresses"]
        }
        assert addresses == {f"{a}%eth0" for a in real}, addresses
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        ha.terminate(proc)
