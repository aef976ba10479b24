"""Multi-homed hosts (issue 16) on a virtual LAN: real daemons, real mDNS, two switches whose
link-local networks overlap — the laptop with Wi-Fi and Ethernet both in 169.254/16.

h1 is on both switches (eth0 on br0, eth1 on br1) and submits; h2, h3 are on br0 only; h4, h5 on
br1 only, holding h2's and h3's addresses. Unscoped, h1's kernel sends to h4's address over
eth0 and reaches h2 (the handshake then refuses it: another node id). Only a connection scoped
to the interface h4 was learned on (eth1) reaches it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.testbed import VirtualLan
from bonjourgrid.testbed.grid import Grid, patience
from bonjourgrid.testbed.journal_view import journal_rows

from .test_failover import check_complete_and_correct, check_each_result_committed_once, first_line
from .test_failover import sweep_app as sweep_replicated
from .test_ipv6_only import HANDSHAKE_BYTES, fetch

pytestmark = pytest.mark.vlan


class Lan:
    def __init__(self, lan: VirtualLan) -> None:
        self.lan = lan
        self.grid = Grid(lan)
        self.h1, self.h2, self.h3, self.h4, self.h5 = lan.hosts
        self.br0 = [self.h2, self.h3]
        self.br1 = [self.h4, self.h5]


@pytest.fixture(scope="module")
def two_links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    lan = VirtualLan(0, base_dir=tmp_path_factory.mktemp("multihomed"), links=2)
    try:
        lan.start()
        lan.add_host()  # h1: both switches
        for bridges in ((0,), (0,), (1,), (1,)):
            lan.add_host(links=bridges)
        s = Lan(lan)
        assert s.h2.address == s.h4.address and s.h3.address == s.h5.address
        s.grid.join_all(lan.hosts, "--slots", "1")
        s.grid.wait_idle(s.h1, lan.hosts)
        yield s
    finally:
        lan.close()


def test_status_reaches_each_peer_on_the_link_it_was_learned_on(two_links: Lan) -> None:
    s = two_links
    rows = {r["host"]: r for r in s.grid.status(s.h1, timeout=5)}
    for h in [*s.br0, *s.br1]:
        assert rows[h.name]["reachable"] is True, rows[h.name]
        assert rows[h.name]["refused"] is None
        assert rows[h.name]["addresses"] == [h.address]  # shown without the scope
    # h2 and h4 share one address and are two machines, both proven by their node keys.
    assert rows[s.h2.name]["id"] != rows[s.h4.name]["id"]


def test_pings_to_the_second_link_leave_on_its_interface(two_links: Lan) -> None:
    s = two_links
    before = s.h1.counters()
    far_before = {h.name: h.counters()["eth0"]["rx_bytes"] for h in s.br1}
    for _ in range(5):
        s.grid.status(s.h1, timeout=5)
    after = s.h1.counters()
    sent_eth1 = after["eth1"]["tx_bytes"] - before["eth1"]["tx_bytes"]
    # five rounds of two authenticated handshakes (and a ping each): ~750 bytes each way on
    # the wire since a frame is one segment; 500 is far above the window's mDNS chatter
    assert sent_eth1 > 5 * 2 * HANDSHAKE_BYTES
    for h in s.br1:  # and they arrived at the br1 hosts themselves
        assert h.counters()["eth0"]["rx_bytes"] - far_before[h.name] > 5 * HANDSHAKE_BYTES


def sweep(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    app = {
        "version": 1,
        "name": "multihomed",
        "workers": 4,
        "sweeps": [
            {
                "template": {
                    "id": "t-{i}",
                    "command": "sleep 1; echo $(( {i} * {i} )) > sq.txt",
                    "outputs": ["sq.txt"],
                },
                "params": {"i": list(range(1, n + 1))},
            }
        ],
    }
    path = directory / "app.json"
    path.write_text(json.dumps(app))
    return path


def test_submit_recruits_volunteers_on_both_links_and_collects_all_results(
    two_links: Lan, tmp_path: Path
) -> None:
    s = two_links
    out = tmp_path / "out"
    app = sweep(tmp_path / "app", 12)
    proc = s.grid.popen_cli(
        s.h1, "submit", str(app), "--output", str(out), "--workers", "4",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _out, stderr = proc.communicate(timeout=patience(120.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, stderr = proc.communicate()
        pytest.fail(f"submit did not end: {stderr.decode(errors='replace')[-3000:]}")
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    results = json.loads((out / "results.json").read_text())
    tasks = results["tasks"]
    assert [t["state"] for t in tasks] == ["done"] * 12
    for t in tasks:
        i = int(t["id"].split("-")[1])
        assert (out / t["id"] / "sq.txt").read_text().strip() == str(i * i)
    workers = {t["worker"] for t in tasks}
    assert workers & {h.name for h in s.br1}, workers  # the second link did work
    assert workers & {h.name for h in s.br0}, workers


def test_coordinator_kill9_on_two_links_loses_no_result(two_links: Lan, tmp_path: Path) -> None:
    """A multi-homed submitter (not joined: its submit's private daemon coordinates, one
    replica) is killed -9; the replica, on either link, finishes the app with every result."""
    s, n = two_links, 40
    submitter = s.lan.add_host()  # on both switches, like h1
    s.grid.wait_idle(s.h1, [*s.br0, *s.br1], timeout=60)
    app_json = sweep_replicated(tmp_path / "app", "multihomed-kill", n, replicas=1, sleep=0.2)
    proc = s.grid.popen_cli(
        submitter, "submit", str(app_json), "--output", str(tmp_path / "never"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = first_line(proc)
    time.sleep(2.0)
    submitter.kill9()
    out = tmp_path / "out"
    results = fetch(s.grid, s.h1, app, out)
    check_complete_and_correct(results, app, n, out)
    finished = []
    for h in s.lan.hosts:
        row, entries = journal_rows(h, app)
        if row is not None and row["role"] == "finished":
            assert row["term"] == 2, row  # the one replica took over, once
            check_each_result_committed_once(entries, n)
            finished.append(h.name)
    assert finished, "nobody finished the app"
