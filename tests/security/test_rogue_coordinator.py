"""A rogue coordinator holding the grid key (issue 12, item 5: trust that binds), on a virtual LAN.

h0 submits a legitimate app signed by alice; h1 volunteers (the only one, ``--slots 1``,
``trusted_users`` = alice and mallory); h2 is mallory, a lab member gone rogue who holds the
grid key and a trusted user key, written with the project's own client code
(tests/security/rogue_coordinator.py). The rogue:

- signs an app of its own (trusted) with a lease of a billion seconds, then sends RunTask with
  another argv than it signed (``cat ~/.config/bjgrid/grid.key``) and inputs that overwrite the
  app's script: both fail unrun with the reason; the lease ends at the volunteer's cap;
- tries to take alice's running worker over with a higher-term Reserve without the CE key's
  proof;
- replays alice's signature under another app id, and under her app id with its own CE key.

Safe outcome: every refusal is said and logged, the canary keeps content, mtime and inode, the
grid key and the canary are in no result or reply, and alice's app completes on h1 with the
correct result, its worker never re-homed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bonjourgrid.app.signing import AppSignature
from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid, patience, reservations

pytestmark = pytest.mark.vlan

PORT = 7710
ROGUE = Path(__file__).with_name("rogue_coordinator.py")
CANARY = "volunteer canary 7c31e\n"
MAX_LEASE = 20.0
"""The fast profile's ``max_lease`` (config.py)."""


def _rogue(
    grid: Grid, rogue: Host, volunteer: Host, mode: str, args: dict[str, object]
) -> list[dict[str, object]]:
    r = rogue.run(
        [sys.executable, str(ROGUE), volunteer.address, str(PORT), str(grid.key_file), mode,
         json.dumps(args)],
        timeout=120,
        env=grid.env(rogue),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]


def _by_attempt(outcomes: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(o["attempt"]): o for o in outcomes}


def _legit_app(host: Host, app: str) -> dict[str, object]:
    """What the rogue could have seen of alice's app: its signature, spec and bundle sum."""
    db = sqlite3.connect(f"file:{host.home / 'state' / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        spec, signature, signer, bundle = db.execute(
            "SELECT spec, signature, signer, bundle FROM apps WHERE app = ?", (app,)
        ).fetchone()
    finally:
        db.close()
    assert AppSignature.decode(signature).app == app and json.loads(signature)["v"] == 2
    return {
        "app": app,
        "signature": signature,
        "user": signer,
        "spec": json.loads(spec),
        "bundle_sha256": hashlib.sha256(bytes(bundle)).hexdigest(),
    }


def test_a_rogue_coordinator_is_refused_and_the_legitimate_app_completes(
    vlan: object, tmp_path: Path
) -> None:
    lan: VirtualLan = vlan(3)  # type: ignore[operator]
    grid = Grid(lan)
    h0, h1, h2 = lan.hosts
    for host, name in ((h0, "alice"), (h2, "mallory")):
        r = grid.cli(host, "keygen", "--user", "--name", name)
        assert r.returncode == 0, r.stderr
    pubs = [(h / "config" / "user.pub").read_text().strip() for h in (h0.home, h2.home)]
    (h1.home / "config").mkdir(parents=True, exist_ok=True)
    (h1.home / "config" / "volunteer.toml").write_text(f"trusted_users = {json.dumps(pubs)}\n")
    canary = h1.home / "canary"
    canary.write_text(CANARY)
    st = os.stat(canary)
    facts = (CANARY, st.st_mtime_ns, st.st_ino)
    grid_key = grid.key_file.read_text().strip()

    grid.join_all([h1], "--port", str(PORT), "--slots", "1")
    grid.wait_idle(h0, [h1])

    # (b) + (d): its own signed app, other argv, overwriting inputs, a greedy lease
    started = time.monotonic()
    own = _by_attempt(
        _rogue(grid, h2, h1, "own-app", {"user_key": str(h2.home / "config" / "user.key")})
    )
    assert "accepted=True" in str(own["own-app-greedy-lease"]["reply"]), own
    assert "ok=True" in str(own["stage"]["reply"]), own
    for what, field in (("other-argv", "argv"), ("inputs-overwrite-script", "run.sh")):
        o = own[what]
        assert o["exit_code"] is None and "refused by the volunteer" in str(o["error"]), o
        assert field in str(o["error"]), o
    grid.wait_idle(h0, [h1], timeout=MAX_LEASE + patience(20.0))
    held = time.monotonic() - started
    print(f"\nthe rogue's billion-second lease ended after {held:.1f} s (max_lease {MAX_LEASE})")
    assert held < MAX_LEASE + patience(20.0)

    # alice's app, long enough for the rogue to try its worker
    app_json = tmp_path / "legit" / "app.json"
    app_json.parent.mkdir()
    app_json.write_text(json.dumps({
        "name": "legit", "workers": 1, "replicas": 0,
        "tasks": [{"id": "answer", "command": "sleep 6; echo $((6*7)) > out.txt",
                   "outputs": ["out.txt"]}],
    }))  # fmt: skip
    out = tmp_path / "legit-out"
    submit = grid.popen_cli(
        h0, "submit", str(app_json), "-o", str(out), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert submit.stdout is not None
    first = submit.stdout.readline().decode().split()
    assert first[:1] == ["app"], first
    app_id = first[1]
    deadline = time.monotonic() + patience(30.0)
    while not any(r["event"] == "reserved" and r["app"] == app_id for r in reservations(h1)):
        assert time.monotonic() < deadline, reservations(h1)
        time.sleep(0.1)
    legit = _legit_app(h0, app_id)

    # (c) a higher-term takeover of alice's running worker without the CE key's proof
    rogue_says = _by_attempt(_rogue(grid, h2, h1, "takeover", legit))
    _stdout, stderr = submit.communicate(timeout=patience(120.0))
    assert submit.returncode == 0, stderr.decode(errors="replace")[-3000:]
    assert (out / "answer" / "out.txt").read_text() == "42\n"
    grid.wait_idle(h0, [h1])

    # (a) alice's signature replayed, with the volunteer idle again
    rogue_says |= _by_attempt(_rogue(grid, h2, h1, "replay", legit))
    for what, why in (
        ("takeover-own-key", "re-homing"),
        ("takeover-no-proof", "re-homing"),
        ("replay-other-id", "replayed"),
        ("replay-same-id", "not made with the app's CE key"),
    ):
        reply = str(rogue_says[what]["reply"])
        assert "accepted=False" in reply and why in reply, (what, reply)

    # the legitimate app's worker was never re-homed; the rogue's apps never ran
    log = reservations(h1)
    legit_events = [r for r in log if r["app"] == app_id and r["event"] == "reserved"]
    assert len(legit_events) == 1, legit_events
    assert not [r for r in log if r["app"] == "stolen01" and r["event"] == "reserved"]
    refusals = [r["reason"] for r in log if r["event"].startswith("refused")]
    assert any("re-homing" in str(why) for why in refusals), refusals
    assert sum(r["event"] == "refused-task" for r in log) == 2, log
    executions = h1.home / "log" / "executions.jsonl"
    ran = executions.read_text().splitlines() if executions.exists() else []
    assert [json.loads(e)["app"] for e in ran] == [app_id], ran

    # canary untouched; neither it nor the grid key in anything the rogue or alice got back
    st = os.stat(canary)
    assert (canary.read_text(), st.st_mtime_ns, st.st_ino) == facts
    seen = json.dumps([own, rogue_says]) + "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()
    )
    assert grid_key not in seen and CANARY.strip() not in seen
    assert "refused task" in grid.log(h1) and "re-homing" in grid.log(h1)
