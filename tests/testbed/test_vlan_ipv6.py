"""IPv6 on the test bed (issue 16): IPv6-only hosts holding only their fe80:: link-local
address, dual-stack hosts, and the default LAN left exactly as before (IPv4 alone)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bonjourgrid.testbed import Host, VirtualLan

pytestmark = pytest.mark.vlan

MakeLan = Callable[..., VirtualLan]
PORT = 7346
DIAL = (  # the product's dialer (scoped addresses: the interface's index as scope id)
    "import asyncio, sys\n"
    "from bonjourgrid.control.dial import open_connection\n"
    "async def main():\n"
    "    r, w = await asyncio.wait_for(open_connection(sys.argv[1], int(sys.argv[2])), 5)\n"
    "    print((await r.readline()).decode().strip()); w.close()\n"
    "asyncio.run(main())\n"
)
SERVE6 = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
    f"s.bind(('::', {PORT})); s.listen(8); print('up', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(socket.gethostname().encode() + b'\\n'); c.close()\n"
)


def eth_addresses(host: Host, interface: str = "eth0") -> list[tuple[str, str]]:
    out = host.run(["ip", "-j", "addr", "show", "dev", interface], timeout=5).stdout
    return [(a["family"], a["local"]) for a in json.loads(out)[0]["addr_info"]]


def if_inet6(host: Host) -> str:
    return host.run(["cat", "/proc/net/if_inet6"], timeout=5).stdout.decode()


def serve(host: Host) -> None:
    proc = host.popen([sys.executable, "-c", SERVE6], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"


def dial(host: Host, address: str) -> str:
    res = host.run([sys.executable, "-c", DIAL, address, str(PORT)], timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode().strip()


def test_ipv6_only_hosts_hold_only_a_usable_link_local_address(vlan: MakeLan) -> None:
    a, b = vlan(2, ipv4=False, ipv6=True).hosts
    for h in (a, b):
        assert h.address.startswith("fe80::") and "%" not in h.address
        assert eth_addresses(h) == [("inet6", h.address)]  # no IPv4, no kernel-made fe80
        assert h.links[0].ipv4 == "" and h.links[0].ipv6 == h.address
        # Usable at once: neither tentative (0x40) nor DAD-failed (0x08) when handed out.
        (line,) = [ln for ln in if_inet6(h).splitlines() if ln.endswith("eth0")]
        assert int(line.split()[4], 16) & 0x48 == 0, line
        assert "224.0.0.0/4" not in h.run(["ip", "route"], timeout=5).stdout.decode()
    assert a.address != b.address
    serve(b)
    assert dial(a, f"{b.address}%eth0") == b.name  # scoped, as discovery learns it


def test_an_ipv6_only_host_knows_only_its_own_name(vlan: MakeLan) -> None:
    lan = vlan(2, ipv4=False, ipv6=True)
    a, b = lan.hosts
    hosts = a.run(["cat", "/etc/hosts"], timeout=5).stdout.decode()
    assert f"{a.address}\t{a.name}" in hosts
    assert b.name not in hosts and b.address not in hosts


def test_dual_stack_hosts_get_both_families_on_each_link(vlan: MakeLan) -> None:
    a, b = vlan(2, ipv6=True).hosts
    assert sorted(eth_addresses(a)) == [("inet", a.address), ("inet6", a.links[0].ipv6)]
    assert a.address.startswith("169.254.") and a.links[0].ipv4 == a.address
    serve(b)
    assert dial(a, b.address) == b.name
    assert dial(a, f"{b.links[0].ipv6}%eth0") == b.name


def test_ipv6_switches_overlap_as_ipv4_ones_do(vlan: MakeLan) -> None:
    lan = vlan(0, links=2, ipv4=False, ipv6=True)
    a = lan.add_host()
    b = lan.add_host(links=(0,))
    c = lan.add_host(links=(1,))
    assert b.address == c.address  # one fe80:: address, two machines on two links
    serve(b)
    serve(c)
    assert dial(a, f"{b.address}%eth0") == b.name
    assert dial(a, f"{c.address}%eth1") == c.name


def test_the_default_lan_keeps_ipv6_off(vlan: MakeLan) -> None:
    (h,) = vlan(1).hosts
    assert eth_addresses(h) == [("inet", h.address)]
    off = h.run(["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"], timeout=5).stdout
    assert off.strip() == b"1"
    assert h.links[0].ipv6 == ""


def test_a_lan_without_any_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IPv4, IPv6 or both"):
        VirtualLan(1, base_dir=tmp_path, ipv4=False, ipv6=False)
