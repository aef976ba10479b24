"""Identifiers from the wire used as paths, sent by a rogue grid-key holder (issue 12, item 2).

One virtual LAN: h0 submits a legitimate app, h1 volunteers (the only one, so the legitimate
app must run there), h2 is a rogue peer holding the grid key, written with the project's own
client code (tests/security/rogue_wire.py). For every message class that carries an app id,
task id, node id or file name, the rogue sends it with a path in that field (``../victim``,
an absolute path, ``..``). Each must be refused where it is decoded and its channel closed;
the canary folders the paths point at keep content, mtime and inode; the volunteer goes on
serving: the legitimate app completes on it with the correct result.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.testbed import VirtualLan
from bonjourgrid.testbed.grid import Grid

pytestmark = pytest.mark.vlan

PORT = 7700
ROGUE = Path(__file__).with_name("rogue_wire.py")
PRECIOUS = "precious canary 81c2\n"


@pytest.fixture
def canaries() -> Iterator[tuple[Path, Path]]:
    outside = Path(tempfile.mkdtemp(prefix="bjgrid-wire-canary-", dir="/var/tmp"))
    (outside / "precious").write_text(PRECIOUS)
    yield outside, outside / "precious"
    shutil.rmtree(outside, ignore_errors=True)


def _facts(root: Path) -> dict[str, tuple[bytes, int, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = os.stat(p)
        out[str(p)] = (p.read_bytes() if p.is_file() else b"", st.st_mtime_ns, st.st_ino)
    st = os.stat(root)
    out[str(root)] = (b"", st.st_mtime_ns, st.st_ino)
    return out


def _plan(victim_rel: str, victim_abs: str) -> list[list[object]]:
    plan: list[list[object]] = []
    for cls in ("Reserve", "Release", "StageApp", "RunTask", "ReplicaOpen", "JournalAppend",
                "AppQuery", "FetchApp", "CancelApp", "Heartbeat", "CancelTask"):  # fmt: skip
        for value in (victim_rel, victim_abs, ".."):
            plan.append([cls, "app", value, cls not in ("Reserve", "AppQuery", "FetchApp")])
    plan += [
        ["RunTask", "task", victim_rel, True],
        ["RunTask", "task", "results.json", True],
        ["CancelTask", "task", victim_rel, True],
        ["RunTask", "outputs", [f"{victim_rel}/precious"], True],
        ["RunTask", "outputs", [victim_abs + "/precious"], True],
        ["RunTask", "env", {"LD_PRELOAD=x": "1"}, True],
        ["Reserve", "coordinator", "../rogue", False],
        ["ReplicaOpen", "replicas", ["../rogue"], True],
        ["Reserve", "lease", -5.0, False],
        ["Reserve", "term", -1, False],
    ]
    return plan


def test_path_ids_from_a_rogue_key_holder_are_refused_and_the_volunteer_serves_on(
    vlan: object, tmp_path: Path, canaries: tuple[Path, Path]
) -> None:
    lan: VirtualLan = vlan(3)  # type: ignore[operator]
    grid = Grid(lan)
    h0, h1, h2 = lan.hosts
    grid.join_all([h1], "--port", str(PORT), "--slots", "1")
    grid.wait_idle(h0, [h1])

    # ../victim from the volunteer's work, apps and task folders; an absolute canary too
    state = h1.home / "state"
    victim = state / "victim"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "precious").write_text(PRECIOUS)
    outside, _ = canaries
    before = {**_facts(victim), **_facts(outside)}

    plan = _plan("../victim", str(outside))
    plan_json = json.dumps(plan)
    r = h2.run(
        [sys.executable, str(ROGUE), h1.address, str(PORT), str(grid.key_file), plan_json],
        timeout=300,
        env=grid.env(h2),
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    outcomes = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    assert len(outcomes) == len(plan)
    assert all("accepted=True" in o["reserved"] for o in outcomes if "reserved" in o), outcomes
    accepted = [o for o in outcomes if not o["closed"]]
    assert accepted == [], f"hostile messages answered instead of refused: {accepted}"

    assert {**_facts(victim), **_facts(outside)} == before, "a canary was touched"
    log = (h1.home / "join.log").read_text(errors="replace")
    assert log.count("refused an invalid message") >= len(plan) // 2, log[-3000:]

    # the volunteer still serves a legitimate coordinator (once the rogue's leases ran out)
    grid.wait_idle(h0, [h1], timeout=60)
    app = tmp_path / "legit" / "app.json"
    app.parent.mkdir()
    app.write_text(json.dumps({
        "name": "legit", "workers": 1,
        "tasks": [{"id": "answer", "command": "echo $((6*7)) > out.txt", "outputs": ["out.txt"]}],
    }))  # fmt: skip
    out = tmp_path / "legit-out"
    res = grid.cli(h0, "submit", str(app), "-o", str(out), timeout=180)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    assert (out / "answer" / "out.txt").read_text() == "42\n"
    for blob in [log, *(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())]:
        assert PRECIOUS not in blob
