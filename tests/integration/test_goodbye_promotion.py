"""Goodbye promotes at once (issue 16, item 3), on a virtual LAN with real daemons and mDNS.

h0 runs `bjgrid join` and coordinates an app submitted there with ``--detach`` and
``replicas: 2``; h1..h3 volunteer; h4 observes. Every daemon runs with a long
``suspect_after`` (20 s), so the heartbeat path alone would wait at least that long. Then h0's
daemon is stopped with SIGTERM: it withdraws its records with mDNS goodbyes but sends no "app
ended". A replica must be dispatching tasks again well before ``suspect_after``, and the app
must complete with every result correct, each task committed once.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid
from bonjourgrid.testbed.submit_output import app_id as submitted_app

pytestmark = pytest.mark.vlan

SUSPECT_AFTER = 20.0
TASKS = 24


def _starts(hosts: list[Host], app: str) -> list[float]:
    """Times of every task start of ``app`` on ``hosts``, from their own execution logs."""
    out = []
    for h in hosts:
        p = h.home / "log" / "executions.jsonl"
        if p.exists():
            for line in p.read_text().splitlines():
                e = json.loads(line)
                if e["app"] == app:
                    out.append(float(e["t"]))
    return sorted(out)


@pytest.fixture
def lan(vlan: object) -> Iterator[tuple[VirtualLan, Grid]]:
    lan: VirtualLan = vlan(5)  # type: ignore[operator]
    timing = f"suspect_after={SUSPECT_AFTER},reserve_lease={3 * SUSPECT_AFTER}"
    grid = Grid(lan, env={"BJGRID_TIMING": timing})
    yield lan, grid


def test_a_coordinator_goodbye_without_app_ended_promotes_a_replica_at_once(
    lan: tuple[VirtualLan, Grid], tmp_path: Path
) -> None:
    vl, grid = lan
    h0, *volunteers, observer = vl.hosts
    grid.join_all([h0, *volunteers], "--slots", "1")
    grid.wait_idle(observer, [h0, *volunteers])

    app = tmp_path / "bye" / "app.json"
    app.parent.mkdir()
    app.write_text(json.dumps({
        "name": "bye", "workers": 3, "replicas": 2,
        "tasks": [{"id": f"t{i}", "command": f"sleep 0.5; echo $(({i}*{i})) > o.txt",
                   "outputs": ["o.txt"]} for i in range(TASKS)],
    }))  # fmt: skip
    r = grid.cli(h0, "submit", str(app), "--detach", "--json", timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    app_id = submitted_app(r.stdout)

    deadline = time.monotonic() + 60
    while len(_starts(volunteers, app_id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_starts(volunteers, app_id)) >= 4, "the app did not get going"

    daemon = grid.daemons[h0.name]
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    stopped = time.time()

    deadline = time.monotonic() + 3 * SUSPECT_AFTER
    again: list[float] = []
    while not again and time.monotonic() < deadline:
        again = [t for t in _starts(volunteers, app_id) if t > stopped]
        time.sleep(0.05)
    assert again, "no task started after the coordinator's goodbye"
    delay = again[0] - stopped
    print(f"\ngoodbye -> dispatching again: {delay:.2f} s (suspect_after {SUSPECT_AFTER:g} s)")
    assert delay < SUSPECT_AFTER / 2, f"promotion took {delay:.1f} s: it waited for suspicion"

    out = tmp_path / "out"
    deadline = time.monotonic() + 120
    while True:
        res = grid.cli(observer, "results", app_id, "--output", str(out), timeout=90)
        if res.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    for i in range(TASKS):
        assert (out / f"t{i}" / "o.txt").read_text() == f"{i * i}\n"
