"""Multi-homed hosts on the test bed (issue 16): two switches whose link-local networks overlap,
and the dialer (control/dial.py) that leaves on the link a peer's address was learned on."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from bonjourgrid.testbed import Host, VirtualLan

pytestmark = pytest.mark.vlan

MakeLan = Callable[..., VirtualLan]
PORT = 7345
SERVE_NAME = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(8); print('up', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(socket.gethostname().encode() + b'\\n'); c.close()\n"
)
DIAL = (
    "import asyncio, sys\n"
    "from bonjourgrid.control.dial import open_connection\n"
    "async def main():\n"
    "    r, w = await asyncio.wait_for(open_connection(sys.argv[1], int(sys.argv[2])), 5)\n"
    "    print((await r.readline()).decode().strip()); w.close()\n"
    "asyncio.run(main())\n"
)


def serve_name(host: Host) -> subprocess.Popen[bytes]:
    proc = host.popen([sys.executable, "-c", SERVE_NAME], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc


def dial(host: Host, address: str) -> str:
    res = host.run([sys.executable, "-c", DIAL, address, str(PORT)], timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode().strip()


def multihomed(vlan: MakeLan) -> tuple[Host, Host, Host]:
    """a on both switches; b on br0 only; c on br1 only, with b's address."""
    lan = vlan(0, links=2)
    a = lan.add_host()
    b = lan.add_host(links=(0,))
    c = lan.add_host(links=(1,))
    return a, b, c


def test_two_switches_overlap_one_address_names_a_host_on_each(vlan: MakeLan) -> None:
    a, b, c = multihomed(vlan)
    assert [(lk.interface, lk.bridge) for lk in a.links] == [("eth0", 0), ("eth1", 1)]
    assert [lk.address for lk in a.links] == [a.address, a.address]
    assert b.address == c.address and b.address != a.address
    routes = a.run(["ip", "route"], timeout=5).stdout.decode()
    assert "169.254.0.0/16 dev eth0" in routes and "169.254.0.0/16 dev eth1" in routes


def test_an_unscoped_connect_takes_the_first_route_a_scoped_one_its_link(vlan: MakeLan) -> None:
    a, b, c = multihomed(vlan)
    for h in (b, c):
        serve_name(h)
    # The link-local trap: without a scope the kernel's first 169.254/16 route (eth0) wins.
    assert dial(a, b.address) == b.name
    assert dial(a, f"{b.address}%eth0") == b.name
    before = a.counters()["eth1"]["tx_bytes"]
    assert dial(a, f"{c.address}%eth1") == c.name
    assert a.counters()["eth1"]["tx_bytes"] > before


def test_link_down_of_one_interface_leaves_the_other_up(vlan: MakeLan) -> None:
    a, b, c = multihomed(vlan)
    serve_name(b)
    serve_name(c)
    a.link_down("eth1")
    res = a.run(
        [sys.executable, "-c", DIAL.replace(", 5)", ", 1)"), f"{c.address}%eth1", str(PORT)],
        timeout=30,
    )
    assert res.returncode != 0
    assert dial(a, f"{b.address}%eth0") == b.name
    a.link_up("eth1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        res = a.run([sys.executable, "-c", DIAL, f"{c.address}%eth1", str(PORT)], timeout=30)
        if res.returncode == 0:
            break
    assert res.stdout.decode().strip() == c.name


def test_a_host_cannot_be_plugged_into_a_switch_the_lan_lacks(vlan: MakeLan) -> None:
    lan = vlan(1)
    with pytest.raises(ValueError):
        lan.add_host(links=(1,))
    with pytest.raises(ValueError):
        lan.add_host(links=(0, 0))
