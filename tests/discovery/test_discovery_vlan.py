"""Discovery over real mDNS between virtual-LAN hosts (network namespaces, never the root one).

Times are taken with the wall clock, which all namespaces share: a driver stamps each command
(``t0``/``t1``) and each view change (``t``). The bounds are the design's (DESIGN.md "mDNS
facts": a fresh browse resolves in ~0.09 s, goodbyes and swaps are seen in ms), with margin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from conftest import GRID, HERE, node_txt, nodes

A, B, C = "a1a1a1a1", "b2b2b2b2", "c3c3c3c3"


def is_view(pred: Any) -> Any:
    return lambda e: e["ev"] == "view" and pred(e)


def test_fresh_browser_sees_idle_volunteer_with_its_txt_and_address(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    a = driver(ha, A)
    a.call("start")
    a.call("volunteer", txt=node_txt(ha, A, cpus=4, backends=["embedded", "condor"], load=2))

    b = driver(hb, B)
    started = b.call("start")
    seen = b.wait_for(is_view(lambda e: A in nodes(e)), timeout=5)

    assert seen["t"] - started["t1"] < 1.0
    m = nodes(seen)[A]
    assert m["state"] == "idle"
    assert m["addresses"] == [f"{ha.address}%eth0"]  # scoped to the link it was learned on
    assert m["port"] == 7000 + ha.index
    assert m["host"] == ha.name
    assert m["instance"] == f"{ha.name}-{A}"
    assert m["txt"] == {
        **node_txt(ha, A, cpus=4, backends=["embedded", "condor"], load=2),
        "policy": "ok",
        "app": None,
        "coordinator": None,
        "attributes": [],
        "isolation": "",  # not advertised by this driver: an older volunteer's record
        "isolation_reason": "",
    }


def test_idle_to_worker_swap_is_seen_at_once_and_node_listed_once(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    a, b = driver(ha, A), driver(hb, B)
    a.call("start")
    a.call("volunteer", txt=node_txt(ha, A))
    b.call("start")
    b.wait_for(is_view(lambda e: A in nodes(e, "idle")), timeout=5)

    mark = len(b.events)
    swap = a.call("volunteer", txt=node_txt(ha, A, app="app1", coordinator=C))
    seen = b.wait_for(is_view(lambda e: A in nodes(e, "worker")), timeout=5, start=mark)

    assert seen["t"] - swap["t0"] < 0.5
    assert nodes(seen)[A]["txt"]["app"] == "app1"
    assert nodes(seen)[A]["txt"]["coordinator"] == C
    # The idle record is gone for good (withdrawn, not merely hidden behind the worker one).
    b.call("settle", seconds=0.3)
    after = b.events[b.events.index(seen) :]
    views = [e for e in after if e["ev"] == "view"]
    assert all(A not in nodes(v, "idle") for v in views)
    # Back to idle, and a TXT-only update of the idle record.
    mark = len(b.events)
    a.call("volunteer", txt=node_txt(ha, A))
    b.wait_for(is_view(lambda e: A in nodes(e, "idle")), timeout=5, start=mark)
    a.call("volunteer", txt=node_txt(ha, A, load=3))
    b.wait_for(is_view(lambda e: nodes(e).get(A, {}).get("txt", {}).get("load") == 3), 5, mark)


def test_coordinator_record_is_visible_then_withdrawn(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    a, b = driver(ha, A), driver(hb, B)
    a.call("start")
    b.call("start")
    coord = {
        "grid": GRID,
        "node": A,
        "host": ha.name,
        "app": "sweep.v2",
        "name": "sweep",
        "user": "ann",
        "term": 1,
    }
    a.call("coord", txt=coord)
    seen_txt = {**coord, "workers": 0, "demand": 0, "weight": 1}  # fair-share defaults
    seen = b.wait_for(is_view(lambda e: e["coords"]), timeout=5)
    assert seen["coords"] == [
        {
            "node": A,
            "host": ha.name,
            "app": "sweep.v2",
            "addresses": [f"{ha.address}%eth0"],
            "port": 7000 + ha.index,
            "txt": seen_txt,
        }
    ]
    # Our own view lists it too.
    assert a.call("settle", seconds=0)["coords"][0]["txt"] == seen_txt

    mark = len(b.events)
    a.call("coord", txt={**coord, "term": 2})
    b.wait_for(is_view(lambda e: e["coords"] and e["coords"][0]["txt"]["term"] == 2), 5, mark)
    mark = len(b.events)
    a.call("withdraw", app="sweep.v2")
    b.wait_for(is_view(lambda e: not e["coords"]), timeout=5, start=mark)


def test_closed_volunteer_leaves_the_view_by_goodbye(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    a, b = driver(ha, A), driver(hb, B)
    a.call("start")
    a.call("volunteer", txt=node_txt(ha, A))
    b.call("start")
    b.wait_for(is_view(lambda e: A in nodes(e)), timeout=5)

    mark = len(b.events)
    closed = a.call("close")
    gone = b.wait_for(is_view(lambda e: A not in nodes(e)), timeout=5, start=mark)
    assert gone["t"] - closed["t0"] < 0.5


def test_records_of_another_grid_are_not_listed(vlan, driver):
    lan = vlan(3)
    ha, hb, hc = lan.hosts
    a, b = driver(ha, A), driver(hb, B)
    c = driver(hc, C, grid="feedf00d")
    for d in (a, b, c):
        d.call("start")
    a.call("volunteer", txt=node_txt(ha, A))
    c.call("volunteer", txt=node_txt(hc, C, grid="feedf00d"))
    b.wait_for(is_view(lambda e: A in nodes(e)), timeout=5)
    # C's own daemon lists C (its grid), B never does.
    c.wait_for(is_view(lambda e: C in nodes(e)), timeout=5)
    b.call("settle", seconds=1.0)
    assert all(C not in nodes(e) for e in b.events if e["ev"] == "view")


def _raw_publisher(host: Any, label: str, txt: list[bytes]) -> subprocess.Popen[str]:
    cfg = {
        "address": host.address,
        "type": "_bjg-idle._tcp.local.",
        "label": label,
        "port": 9,
        "txt_hex": [s.hex() for s in txt],
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


def test_malformed_txt_is_dropped_without_harm(vlan, driver):
    lan = vlan(3)
    ha, hb, hc = lan.hosts
    b = driver(hb, B)
    b.call("start")
    good = [
        f"{k}={v}".encode()
        for k, v in {
            "v": 1,
            "g": GRID,
            "n": C,
            "h": "hc",
            "c": 2,
            "s": 2,
            "m": 9,
            "o": "linux",
            "a": "x86_64",
            "b": "",
            "p": "ok",
            "l": 0,
        }.items()
    ]
    publishers = [
        _raw_publisher(hc, "bad-int", [s if s != b"c=2" else b"c=two" for s in good]),
        _raw_publisher(hc, "bad-version", [b"v=9", *good[1:]]),
        _raw_publisher(hc, "bad-utf8", [*good[:3], b"h=\xff\xfe", *good[4:]]),
        _raw_publisher(hc, "no-fields", [b"v=1", b"g=" + GRID.encode()]),
    ]
    try:
        a = driver(ha, A)
        a.call("start")
        a.call("volunteer", txt=node_txt(ha, A))
        b.wait_for(is_view(lambda e: A in nodes(e)), timeout=5)
        b.call("settle", seconds=1.0)
        assert all(set(nodes(e)) <= {A} for e in b.events if e["ev"] == "view")
        assert b.proc.poll() is None
        warnings = [line for line in b.stderr if "malformed TXT" in line]
        assert sorted(w.split("ignoring ")[1].split(".")[0] for w in warnings) == [
            "bad-int",
            "bad-utf8",
            "bad-version",
            "no-fields",
        ]
    finally:
        for p in publishers:
            assert p.stdin is not None
            p.stdin.close()
            hc.terminate(p)


def test_follows_a_new_address_and_re_registers(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    a, b = driver(ha, A), driver(hb, B)
    a.call("start")
    a.call("volunteer", txt=node_txt(ha, A))
    b.call("start")
    b.wait_for(is_view(lambda e: A in nodes(e)), timeout=5)

    extra = "169.254.250.250"
    mark = len(b.events)
    ha.run(["ip", "addr", "add", f"{extra}/16", "dev", "eth0"], timeout=10)
    seen = b.wait_for(
        is_view(
            lambda e: (
                set(nodes(e).get(A, {}).get("addresses", []))
                == {f"{ha.address}%eth0", f"{extra}%eth0"}
            )
        ),
        timeout=5,
        start=mark,
    )
    assert nodes(seen)[A]["state"] == "idle"
    assert sorted(a.call("addresses")["addresses"]) == sorted([ha.address, extra])


def test_starts_without_an_interface_and_publishes_once_one_comes_up(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    ha.run(["ip", "link", "set", "eth0", "down"], timeout=10)
    a, b = driver(ha, A), driver(hb, B)
    a.call("start")
    a.call("volunteer", txt=node_txt(ha, A))
    assert a.call("addresses")["addresses"] == []
    assert nodes(a.call("settle", seconds=0))[A]["addresses"] == []  # listed locally anyway
    b.call("start")

    ha.run(["ip", "link", "set", "eth0", "up"], timeout=10)
    seen = b.wait_for(is_view(lambda e: A in nodes(e)), timeout=5)
    assert nodes(seen)[A]["addresses"] == [f"{ha.address}%eth0"]
    assert a.proc.poll() is None


def test_quick_flips_between_idle_and_worker_are_all_seen(vlan, driver):
    # zeroconf drops a packet identical to one seen < 0.8 s before: each publication must differ.
    lan = vlan(2)
    ha, hb = lan.hosts
    a, b = driver(ha, A), driver(hb, B)
    a.call("start")
    b.call("start")
    idle, worker = node_txt(ha, A), node_txt(ha, A, app="app1", coordinator=C)
    for txt, state in [(idle, "idle"), (worker, "worker")] * 3:
        mark = len(b.events)
        a.call("volunteer", txt=txt)
        b.wait_for(is_view(lambda e, s=state: A in nodes(e, s)), timeout=1.0, start=mark)
    # No withdrawn record lingers behind the current one.
    a.call("volunteer", txt=None)
    b.call("settle", seconds=0.5)
    assert A not in nodes(b.call("settle", seconds=0))
