"""A slow mDNS start is waited for, never a crash (issue 16, item 4): real zeroconf in a
virtual-LAN host whose event loop is starved while its stack starts."""

from __future__ import annotations

import json
from typing import Any

from conftest import Driver, node_txt, nodes

A, B = "a1a1a1a1", "b2b2b2b2"


def _view_with(node: str) -> Any:
    return lambda e: e["ev"] == "view" and node in nodes(e)


def _start_starved(d: Driver, starve: float, timeout: float = 90.0) -> dict[str, Any]:
    """``start`` with the driver's loop held ``starve`` s at each turn; its ``done`` event."""
    assert d.proc.stdin is not None
    mark = len(d.events)
    d.proc.stdin.write(json.dumps({"op": "start", "starve": starve}) + "\n")
    d.proc.stdin.flush()
    return d.wait_for(lambda e: e["ev"] == "done" and e["op"] == "start", timeout, mark)


def test_a_stack_slower_than_one_wait_is_waited_for_and_comes_up(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    # Each turn of A's loop is held 0.1 s, longer than start_wait (0.05 s): a zeroconf wait
    # that short raises NotRunningException and leaves the instance unable to ever start.
    a = driver(ha, A, start_wait=0.05, start_patience=60.0)
    done = _start_starved(a, 0.1)
    a.call("volunteer", txt=node_txt(ha, A))
    assert a.call("addresses")["addresses"] == [ha.address]
    b = driver(hb, B)
    b.call("start")
    b.wait_for(_view_with(A), timeout=10)
    err = "".join(a.stderr)
    assert "mDNS stack slow to start" in err, (done, err)
    assert "Traceback" not in err, err


def test_a_stack_that_never_starts_in_time_is_retried_by_the_poll(vlan, driver):
    lan = vlan(2)
    ha, hb = lan.hosts
    # No patience at all: the first stack is closed; the address poll (0.2 s) starts another.
    a = driver(ha, A, start_wait=0.01, start_patience=0.02, interface_poll=0.5)
    _start_starved(a, 0.3)
    a.call("volunteer", txt=node_txt(ha, A))  # waits in the desired state meanwhile
    b = driver(hb, B)
    b.call("start")
    seen: dict[str, Any] = b.wait_for(_view_with(A), timeout=30)
    assert nodes(seen)[A]["addresses"] == [f"{ha.address}%eth0"]
    err = "".join(a.stderr)
    assert "not running after" in err and "will retry" in err, err
    assert "Traceback" not in err, err
