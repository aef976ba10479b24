"""A rogue node holding the grid key (tests/security/rogue_node.py, the project's own code)
on a virtual LAN: it cannot speak as another node, its forged results for attempts running on
another worker are refused (the legitimate app completes with the correct results, nothing
forged in them), and a peer of control protocol 1 is refused with a reason ``bjgrid status``
shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bonjourgrid.testbed import VirtualLan
from bonjourgrid.testbed.grid import Grid, patience

pytestmark = pytest.mark.vlan

PORT = 7700
ROGUE = Path(__file__).with_name("rogue_node.py")
FORGED = "FORGED by the rogue 7c1e"


def _rogue(grid: Grid, host: object, *args: str) -> subprocess.Popen[bytes]:
    return host.popen(  # type: ignore[attr-defined,no-any-return]
        [sys.executable, str(ROGUE), args[0], str(grid.key_file), *args[1:]],
        env=grid.env(host),  # type: ignore[arg-type]
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _events(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_a_rogue_cannot_claim_another_nodes_id_nor_forge_its_results(
    vlan: object, tmp_path: Path
) -> None:
    lan: VirtualLan = vlan(3)  # type: ignore[operator]
    grid = Grid(lan)
    h0, h1, h2 = lan.hosts
    grid.join_all([h0, h1], "--port", str(PORT), "--slots", "1")
    grid.wait_idle(h0, [h0, h1])

    # (a) the rogue learns h0's id and public key, then claims to be h0 to h1
    r = h2.run(
        [sys.executable, str(ROGUE), "impersonate", str(grid.key_file),
         h0.address, str(PORT), h1.address, str(PORT)],
        timeout=60, env=grid.env(h2),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    tries = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [t["try"] for t in tries] == ["learn", "own key", "borrowed key"]
    assert tries[1]["outcome"] == "refused" and "fingerprint" in str(tries[1]["said"])
    assert tries[2]["outcome"] == "refused"
    assert "failed to prove its node key" in grid.log(h1)

    # (b) the rogue volunteers and forges results for the attempts running on h1
    log = tmp_path / "rogue.jsonl"
    rogue = _rogue(grid, h2, "worker", str(PORT), str(log))
    try:
        deadline = time.monotonic() + patience(30.0)
        while not any(e.get("event") == "up" for e in _events(log)):
            assert rogue.poll() is None, rogue.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "rogue did not start"
            time.sleep(0.1)
        # h0 must have seen the rogue idle before the app recruits, and the app asks for every
        # volunteer: on a loaded machine a slow announcement otherwise leaves it unrecruited
        rogue_id = next(e["node"] for e in _events(log) if e.get("event") == "up")
        while not any(
            r["id"] == rogue_id and r["state"] == "idle" and r["reachable"] for r in grid.status(h0)
        ):
            assert time.monotonic() < deadline, "h0 never saw the rogue idle"
            time.sleep(0.2)
        app = tmp_path / "legit" / "app.json"
        app.parent.mkdir()
        app.write_text(json.dumps({
            "name": "legit", "workers": 3,
            "tasks": [{"id": f"t{i}", "command": f"sleep 2; echo real-{i} > out.txt",
                       "outputs": ["out.txt"]} for i in range(4)],
        }))  # fmt: skip
        out = tmp_path / "out"
        res = grid.cli(h0, "submit", str(app), "-o", str(out), timeout=300)
        assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    finally:
        lan.hosts[2].terminate(rogue)
    events = _events(log)
    assert any(e["event"] == "reserved" for e in events), "the rogue was never recruited"
    assert any(e["event"] == "forged" for e in events)
    for i in range(4):
        assert (out / f"t{i}" / "out.txt").read_text() == f"real-{i}\n"
    for p in out.rglob("*"):
        if p.is_file():
            assert FORGED not in p.read_text(errors="replace"), p
    results = json.loads((out / "results.json").read_text())
    assert {t["state"] for t in results["tasks"]} == {"done"}
    assert "refused a TaskResult from" in grid.log(h0) and "was placed on" in grid.log(h0)


def test_a_peer_of_control_protocol_1_is_refused_and_status_says_upgrade_it(
    vlan: object,
) -> None:
    lan: VirtualLan = vlan(2)  # type: ignore[operator]
    grid = Grid(lan)
    h0, h1 = lan.hosts
    grid.join_all([h0], "--port", str(PORT))
    old = _rogue(grid, h1, "old", str(PORT))
    try:
        line = old.stdout.readline()  # type: ignore[union-attr]
        assert line, old.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        old_id = json.loads(line)["up"]
        deadline = time.monotonic() + patience(30.0)
        while True:
            rows = {r["id"]: r for r in grid.status(h0)}
            if old_id in rows or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        row = rows[old_id]
        assert row["reachable"] is False
        assert "speaks control protocol 1, this bjgrid speaks 2: upgrade it" in str(row["refused"])
        table = grid.cli(h0, "status", "--timeout", "3", timeout=60).stdout.decode()
        assert "refused us:" in table and "upgrade it" in table
    finally:
        h1.terminate(old)
