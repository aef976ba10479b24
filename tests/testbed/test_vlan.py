"""The virtual LAN test bed: reachability, hostnames, partitions, crashes, multicast, cleanup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from bonjourgrid.testbed import Host, VirtualLan, VlanError, leftover_namespaces

pytestmark = pytest.mark.vlan

MakeLan = Callable[..., VirtualLan]
PY = sys.executable
PORT = 7000

ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(100)); c.close()
"""

# Tries to echo through the server until one attempt works or `tries` attempts failed.
ECHO_CLIENT = """
import socket, sys, time
addr, port, tries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(tries):
    try:
        with socket.create_connection((addr, port), timeout=0.3) as c:
            c.sendall(b"ping"); print(c.recv(100).decode()); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
"""

MCAST_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5353))
mreq = socket.inet_aton("224.0.0.251") + socket.inet_aton(sys.argv[1])
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("ready", flush=True)
s.settimeout(5)
data, src = s.recvfrom(1500)
print(data.decode(), src[0], flush=True)
"""

MCAST_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
for _ in range(5):
    s.sendto(sys.argv[2].encode(), ("224.0.0.251", 5353)); time.sleep(0.05)
"""

# Ignores SIGTERM and leaves a grandchild behind: the worst case for cleanup.
STUBBORN = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "100"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(100)
"""


def start_echo_server(host: Host) -> subprocess.Popen[bytes]:
    server = host.popen([PY, "-c", ECHO_SERVER, host.address, str(PORT)], stdout=subprocess.PIPE)
    assert server.stdout is not None
    assert server.stdout.readline() == b"ready\n"
    return server


def echo(client: Host, server: Host, tries: int) -> bool:
    argv = [PY, "-c", ECHO_CLIENT, server.address, str(PORT), str(tries)]
    res = client.run(argv, timeout=10)
    return res.returncode == 0 and res.stdout == b"ping\n"


def start_stubborn(host: Host) -> tuple[subprocess.Popen[bytes], int]:
    """A SIGTERM-ignoring process in ``host`` and the pid of its detached grandchild."""
    proc = host.popen([PY, "-c", STUBBORN], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def test_hosts_have_unique_link_local_ipv4_only_addresses_and_homes(vlan: MakeLan) -> None:
    lan = vlan(3)
    addresses = [h.address for h in lan.hosts]
    assert len(set(addresses)) == 3
    assert all(a.startswith("169.254.") for a in addresses)
    assert len({h.netns for h in lan.hosts}) == 3
    for h in lan.hosts:
        assert h.home.is_dir()
        assert h.env()["BJGRID_HOME"] == str(h.home)
        out = h.run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"], timeout=5).stdout.decode()
        assert f"{h.address}/16" in out
        assert h.run(["ip", "-6", "addr"], timeout=5).stdout == b""  # IPv4-only mDNS
        routes = h.run(["ip", "route"], timeout=5).stdout.decode()
        assert "default" not in routes
        assert "224.0.0.0/4 dev eth0" in routes


def test_hosts_reach_each_other_over_tcp(vlan: MakeLan) -> None:
    h1, h2 = vlan(2).hosts
    start_echo_server(h2)
    assert echo(h1, h2, tries=20)


def test_each_host_sees_its_own_hostname(vlan: MakeLan) -> None:
    lan = vlan(2)
    for h in lan.hosts:
        assert h.run(["hostname"], timeout=5).stdout.decode().strip() == h.name
    assert socket.gethostname() not in {h.name for h in lan.hosts}


def test_a_host_resolves_its_own_name_and_no_other_like_a_fresh_desktop(vlan: MakeLan) -> None:
    lan = vlan(3)
    resolve = (
        "import socket, sys\ntry: print(socket.gethostbyname(sys.argv[1]))\n"
        "except OSError: print('-')"
    )
    for h in lan.hosts:
        for other in lan.hosts:
            got = h.run([sys.executable, "-c", resolve, other.name], timeout=10)
            want = h.address if other is h else "-"
            assert got.stdout.decode().strip() == want, (h.name, other.name)
    late = lan.add_host()
    got = lan.hosts[0].run([sys.executable, "-c", resolve, late.name], timeout=10)
    assert got.stdout.decode().strip() == "-"


def test_popen_pid_is_the_real_process(vlan: MakeLan) -> None:
    (h1,) = vlan(1).hosts
    proc = h1.popen(["sh", "-c", "echo $$; exec sleep 100"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert int(proc.stdout.readline()) == proc.pid
    assert proc.pid in h1.pids()
    assert h1.terminate(proc) == -15
    assert h1.pids() == []


def test_link_down_cuts_the_host_off_and_link_up_restores_it(vlan: MakeLan) -> None:
    h1, h2 = vlan(2).hosts
    start_echo_server(h2)
    assert echo(h1, h2, tries=20)
    h2.link_down()
    assert not echo(h1, h2, tries=2)
    h2.link_up()
    assert echo(h1, h2, tries=40)


def test_kill9_kills_everything_in_the_host_and_nothing_else(vlan: MakeLan) -> None:
    h1, h2 = vlan(2).hosts
    proc, grandchild = start_stubborn(h1)
    other = h2.popen(["sleep", "100"])
    h1.kill9()
    assert h1.pids() == []
    assert proc.returncode == -9
    assert gone(grandchild)
    assert other.poll() is None
    h2.terminate(other)


def test_multicast_to_the_mdns_group_reaches_every_other_host(vlan: MakeLan) -> None:
    sender, *receivers = vlan(3).hosts
    procs = []
    for r in receivers:
        p = r.popen([PY, "-c", MCAST_RECEIVER, r.address], stdout=subprocess.PIPE)
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        procs.append(p)
    sender.run([PY, "-c", MCAST_SENDER, sender.address, "hello"], timeout=10)
    for p in procs:
        out, _ = p.communicate(timeout=10)
        assert out.decode().split() == ["hello", sender.address]


def test_add_host_joins_the_running_lan(vlan: MakeLan) -> None:
    lan = vlan(1)
    h2 = lan.add_host()
    assert lan.hosts == [lan.hosts[0], h2]
    assert h2.name == "h2"
    assert h2.address != lan.hosts[0].address
    start_echo_server(h2)
    assert echo(lan.hosts[0], h2, tries=20)


def test_start_twice_is_harmless(vlan: MakeLan) -> None:
    lan = vlan(2)
    assert lan.start() is lan
    assert len(lan.hosts) == 2


def test_start_creates_nothing_in_the_root_namespace(tmp_path: Path) -> None:
    before = root_links()
    with VirtualLan(2, base_dir=tmp_path) as lan:
        assert root_links() == before
        root_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        assert all(h.address not in root_addrs for h in lan.hosts)


def test_close_after_an_exception_leaves_no_namespace_or_process(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), VirtualLan(2, base_dir=tmp_path) as lan:
        proc, grandchild = start_stubborn(lan.hosts[0])
        raise RuntimeError("boom")
    assert not [n for n in leftover_namespaces() if n.startswith(lan.prefix)]
    assert proc.returncode == -9
    assert gone(grandchild)
    lan.close()  # again: nothing left to do, no error
    with pytest.raises(VlanError):
        lan.hosts[0].popen(["true"])


def test_failed_start_cleans_up_and_raises(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    lan = VirtualLan(2, base_dir=not_a_dir)  # host homes cannot be created under a file
    with pytest.raises(OSError):
        lan.start()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(lan.prefix)]
