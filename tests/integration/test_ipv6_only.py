"""IPv6-only hosts (issue 16) on a virtual LAN: real daemons, real mDNS over ff02::fb, each
host holding nothing but its fe80:: link-local address on eth0 — no IPv4 address at all, so
every mDNS packet and every control connection is IPv6 link-local with a scope.

h0 submits without joining (its submit's private daemon coordinates), h1..h4 volunteer, h5 is
a desktop that looks (status) and fetches results.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid, patience

from .test_failover import (
    check_complete_and_correct,
    check_each_result_committed_once,
    first_line,
    holders,
    sweep_app,
)

pytestmark = pytest.mark.vlan

VOLUNTEERS = 4

HANDSHAKE_BYTES = 500
"""Fewest bytes one authenticated handshake and ping put on the wire (~750 measured)."""


class Lan:
    def __init__(self, lan: VirtualLan) -> None:
        self.lan = lan
        self.grid = Grid(lan)
        self.h0 = lan.hosts[0]
        self.volunteers = lan.hosts[1 : VOLUNTEERS + 1]
        self.observer = lan.hosts[VOLUNTEERS + 1]
        self.first_status_s = 0.0


@pytest.fixture(scope="module")
def v6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    lan = VirtualLan(
        VOLUNTEERS + 2, base_dir=tmp_path_factory.mktemp("ipv6-only"), ipv4=False, ipv6=True
    )
    try:
        lan.start()
        s = Lan(lan)
        started = time.monotonic()
        s.grid.join_all(s.volunteers, "--slots", "1")
        s.grid.wait_idle(s.observer, s.volunteers)
        s.first_status_s = time.monotonic() - started
        yield s
    finally:
        lan.close()


def test_hosts_have_no_ipv4_address_only_their_link_local_ipv6(v6: Lan) -> None:
    for h in v6.lan.hosts:
        out = h.run(["ip", "-j", "addr", "show", "dev", "eth0"], timeout=5).stdout
        addrs = [(a["family"], a["local"]) for a in json.loads(out)[0]["addr_info"]]
        assert addrs == [("inet6", h.address)], addrs
        assert h.address.startswith("fe80::")


def test_status_sees_every_volunteer_reachable_over_ipv6_link_local(v6: Lan) -> None:
    s = v6
    rows = {r["host"]: r for r in s.grid.status(s.observer, timeout=5)}
    for h in s.volunteers:
        row = rows[h.name]
        assert row["reachable"] is True, row
        assert row["refused"] is None
        assert row["addresses"] == [h.address]  # shown without the scope
    print(f"join of {VOLUNTEERS} volunteers -> all idle in status: {s.first_status_s:.1f} s")


def test_submit_on_ipv6_only_hosts_gives_every_result_correct(v6: Lan, tmp_path: Path) -> None:
    s, n = v6, 12
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    app = sweep_app(tmp_path / "app", "v6-submit", n, replicas=0, sleep=0.2)
    out = tmp_path / "out"
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app), "--output", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _o, stderr = proc.communicate(timeout=patience(120.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        _o, stderr = proc.communicate()
        pytest.fail(f"submit did not end: {stderr.decode(errors='replace')[-3000:]}")
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    results = json.loads((out / "results.json").read_text())
    check_complete_and_correct(results, results["app"], n, out)
    workers = {t["worker"] for t in results["tasks"]}
    assert len(workers) >= 2, workers  # recruited over IPv6, more than one volunteer


def test_coordinator_kill9_on_ipv6_only_hosts_loses_no_result(v6: Lan, tmp_path: Path) -> None:
    s, n = v6, 60
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    app_json = sweep_app(tmp_path / "app", "v6-kill", n, replicas=1, sleep=0.1)
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app_json), "--output", str(tmp_path / "never"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = first_line(proc)
    time.sleep(1.5)
    s.h0.kill9()  # the coordinator: submit and its private daemon
    killed = time.monotonic()
    out = tmp_path / "out"
    results = fetch(s.grid, s.observer, app, out)
    check_complete_and_correct(results, app, n, out)
    held = holders(s, app)  # type: ignore[arg-type]  # same attributes as test_failover's Lan
    final = [e for row, e in held.values() if row["role"] == "finished"]
    assert final, f"nobody finished the app: { {h: r for h, (r, _) in held.items()} }"
    assert max(row["term"] for row, _ in held.values()) == 2  # the replica took over once
    for entries in final:
        check_each_result_committed_once(entries, n)
    print(f"kill -9 -> every result fetched over IPv6: {time.monotonic() - killed:.1f} s")


def fetch(
    grid: Grid, observer: Host, app: str, out: Path, timeout: float = 120.0
) -> dict[str, Any]:
    """`bjgrid results APP` from ``observer`` until the app is complete (as test_failover)."""
    deadline = time.monotonic() + patience(timeout)
    last = ""
    while time.monotonic() < deadline:
        r = grid.cli(observer, "results", app, "--output", str(out), timeout=90)
        last = r.stderr.decode(errors="replace")
        if r.returncode in (0, 1):
            assert r.returncode == 0, last
            results: dict[str, Any] = json.loads((out / "results.json").read_text())
            return results
        assert r.returncode in (3, 4), last
        time.sleep(0.5)
    said = [f"--- {h.name}:\n" + grid.log(h)[-2000:] for h in grid.lan.hosts]
    pytest.fail(f"app {app} not complete after {timeout} s: {last[-2000:]}\n" + "\n".join(said))


@pytest.fixture(scope="module")
def v6_two_links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Grid, list[Host]]]:
    """h1 on both switches; h2 on br0, h3 on br1 holding h2's fe80:: address: only the scope
    (the interface it was learned on) tells them apart."""
    lan = VirtualLan(
        0, base_dir=tmp_path_factory.mktemp("ipv6-links"), links=2, ipv4=False, ipv6=True
    )
    try:
        lan.start()
        hosts = [lan.add_host(), lan.add_host(links=(0,)), lan.add_host(links=(1,))]
        assert hosts[1].address == hosts[2].address
        grid = Grid(lan)
        grid.join_all(hosts, "--slots", "1")
        grid.wait_idle(hosts[0], hosts)
        yield grid, hosts
    finally:
        lan.close()


def test_ipv6_peers_sharing_one_address_on_two_links_are_each_reached_on_theirs(
    v6_two_links: tuple[Grid, list[Host]],
) -> None:
    grid, (h1, h2, h3) = v6_two_links
    before = h1.counters()["eth1"]["tx_bytes"]
    far_before = h3.counters()["eth0"]["rx_bytes"]
    for _ in range(5):
        rows = {r["host"]: r for r in grid.status(h1, timeout=5)}
        for h in (h2, h3):
            assert rows[h.name]["reachable"] is True, rows[h.name]
            assert rows[h.name]["addresses"] == [h.address]
        assert rows[h2.name]["id"] != rows[h3.name]["id"]  # one address, two machines
    # Five authenticated handshakes with h3 (and a ping each: ~750 bytes each way, a frame
    # being one segment) left on eth1 and arrived at h3 itself.
    assert h1.counters()["eth1"]["tx_bytes"] - before > 5 * HANDSHAKE_BYTES
    assert h3.counters()["eth0"]["rx_bytes"] - far_before > 5 * HANDSHAKE_BYTES


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Grid, list[Host]]]:
    """Dual-stack hosts (169.254/16 and fe80:: on eth0), as most real desktops are."""
    lan = VirtualLan(3, base_dir=tmp_path_factory.mktemp("dual-stack"), ipv6=True)
    try:
        lan.start()
        grid = Grid(lan)
        grid.join_all(lan.hosts[1:], "--slots", "1")
        grid.wait_idle(lan.hosts[0], lan.hosts[1:])
        yield grid, lan.hosts
    finally:
        lan.close()


def test_dual_stack_peers_advertise_both_families_and_submit_completes(
    dual: tuple[Grid, list[Host]], tmp_path: Path
) -> None:
    grid, (h0, *volunteers) = dual
    rows = {r["host"]: r for r in grid.status(h0, timeout=5)}
    for h in volunteers:
        assert rows[h.name]["reachable"] is True, rows[h.name]
        assert rows[h.name]["addresses"] == [h.address, h.links[0].ipv6]  # both, IPv4 first
    n, out = 8, tmp_path / "out"
    app = sweep_app(tmp_path / "app", "dual", n, replicas=1, sleep=0.1)
    r = grid.cli(h0, "submit", str(app), "--output", str(out), timeout=patience(120.0))
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    results = json.loads((out / "results.json").read_text())
    check_complete_and_correct(results, "dual", n, out)
