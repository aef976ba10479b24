"""Another user of the lab asks for alice's results, or to cancel her app (issue 12, item 5).

One virtual LAN: h0 is alice's desktop (her signing key; its daemon coordinates her signed
app), h1 volunteers (worker and replica of the app), h2 is mallory's: she holds the grid key
and a user key of her own. While alice's app runs, mallory tries ``bjgrid cancel`` and
``bjgrid results``, then a rogue client written with the project's own code
(tests/security/rogue_requests.py) sends FetchApp/CancelApp straight to alice's coordinator
with no proof, her own, a forged one and alice's captured proofs (for another node, stale,
for another action, replayed). Every attempt is refused with "not the submitter" and logged;
alice's app is not cancelled and completes with the correct result, which ``bjgrid results``
on alice's host writes; mallory still gets nothing once it is complete.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from bonjourgrid.testbed import VirtualLan
from bonjourgrid.testbed.grid import Grid, patience

pytestmark = pytest.mark.vlan

PORT = 7701
ROGUE = Path(__file__).with_name("rogue_requests.py")
TASK_SECONDS = 30
"""Long enough that mallory's attempts all happen while the app runs (asserted)."""


def _text(r: object) -> str:
    return (r.stdout + r.stderr).decode(errors="replace")  # type: ignore[attr-defined]


def test_only_the_submitter_gets_results_or_cancels_a_signed_app(
    vlan: object, tmp_path: Path
) -> None:
    lan: VirtualLan = vlan(3)  # type: ignore[operator]
    grid = Grid(lan)
    h0, h1, h2 = lan.hosts
    for host, user in ((h0, "alice"), (h2, "mallory")):
        r = grid.cli(host, "keygen", "--user", "--name", user)
        assert r.returncode == 0, _text(r)
    grid.join(h0, "--port", str(PORT), "--slots", "1")
    grid.join(h1, "--slots", "1")
    grid.wait_daemon(h0)
    grid.wait_daemon(h1)
    grid.wait_idle(h0, [h1])

    app_json = tmp_path / "alice" / "app.json"
    app_json.parent.mkdir()
    app_json.write_text(json.dumps({
        "name": "alices", "workers": 1, "replicas": 1,
        "tasks": [{"id": "answer", "command": f"sleep {TASK_SECONDS}; echo $((6*7)) > out.txt",
                   "outputs": ["out.txt"]}],
    }))  # fmt: skip
    r = grid.cli(h0, "submit", str(app_json), "--detach", timeout=120)
    assert r.returncode == 0, _text(r)
    assert "unsigned" not in _text(r)
    app = r.stdout.decode().splitlines()[0].split()[1]
    started = time.monotonic()

    # mallory through the product's own commands
    r = grid.cli(h2, "cancel", app, timeout=90)
    assert r.returncode == 4, _text(r)
    assert "not the submitter" in _text(r), _text(r)
    mallory_out = tmp_path / "mallory-out"
    r = grid.cli(h2, "results", app, "-o", str(mallory_out), timeout=120)
    assert r.returncode == 4, _text(r)
    assert "not the submitter" in _text(r), _text(r)
    assert not mallory_out.exists()

    # a rogue client straight at alice's coordinator
    r = h2.run(
        [sys.executable, str(ROGUE), h0.address, str(PORT), str(grid.key_file), app,
         str(h2.home / "config" / "user.key"), str(h0.home / "config" / "user.key")],
        timeout=120, env=grid.env(h2),
    )  # fmt: skip
    assert r.returncode == 0, _text(r)
    outcomes = {o["attempt"]: o for o in map(json.loads, r.stdout.decode().splitlines())}
    assert len(outcomes) == 12, outcomes
    hers = outcomes.pop("fetch with alice's proof (her use)")
    assert hers["reply"] == "AppResults", f"a valid proof must be accepted: {hers}"
    for attempt, o in outcomes.items():
        assert o["reply"] == "Error" and not o["leaked"], f"{attempt}: {o}"
        assert "not the submitter" in o["reason"], f"{attempt}: {o}"
    assert "replay" in outcomes["fetch replaying alice's used proof"]["reason"]
    assert "stale" in outcomes["fetch with alice's stale proof"]["reason"]
    assert "carried it" in outcomes["fetch with alice's proof for another node"]["reason"]
    assert "not cancel" in outcomes["cancel with alice's results proof"]["reason"]
    elapsed = time.monotonic() - started

    # every attempt came while the app ran: alice sees it still running
    r = grid.cli(h0, "results", app, "-o", str(tmp_path / "partial"), timeout=90)
    late = f"the app ended before the attempts were over ({elapsed:.0f} s): "
    assert r.returncode == 3, late + _text(r)

    # alice's app completes, not cancelled, with the right result
    out = tmp_path / "alice-out"
    deadline = time.monotonic() + patience(180.0)
    while True:
        r = grid.cli(h0, "results", app, "-o", str(out), timeout=90)
        if r.returncode != 3 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert r.returncode == 0, _text(r)
    assert (out / "answer" / "out.txt").read_text() == "42\n"
    doc = json.loads((out / "results.json").read_text())
    assert [(t["id"], t["state"]) for t in doc["tasks"]] == [("answer", "done")]

    log = grid.log(h0)
    assert f"refused cancel of app {app}" in log, log[-3000:]
    assert f"refused results of app {app}" in log, log[-3000:]
    assert "cancelled by its submitter" not in log

    # complete now, and still not mallory's
    r = grid.cli(h2, "results", app, "-o", str(mallory_out), timeout=120)
    assert r.returncode == 4 and "not the submitter" in _text(r), _text(r)
    assert not mallory_out.exists()
