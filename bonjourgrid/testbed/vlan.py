"""A virtual LAN of network namespaces: the test bed for real processes and real mDNS.

Theory of operation: every LAN has a unique name prefix (``bjg<pid>x<rand>``). Its switch is a
Linux bridge in a namespace of its own (``<prefix>-sw``); each host is a namespace
(``<prefix>-h<i>``) joined to the bridge by a veth pair whose host end is ``eth0`` with a
link-local 169.254.X.Y/16 address, a 224.0.0.0/4 route (multicast) and nothing else: no default
route, no DNS, no IPv6 unless asked (the user's LAN lab, IPv4 mDNS only). Nothing is created in
the root namespace, so no packet of ours can reach the machine's real interfaces. Processes run in a
host's namespace, in a UTS namespace of their own whose hostname is the host's name, and in a
mount namespace of their own where ``/etc/hosts`` is the host's own hosts file: localhost and
its own name -> its link-local address, nothing else, as on a fresh desktop of a lab with no
DNS (issue 16). So a host's own name resolves, as software such as HTCondor's bindings
requires, and a dependence on resolving another host's name fails here as it would in a real
lab. The mounts vanish with the processes.

Multi-homed hosts (issue 16): ``VirtualLan(n, links=2)`` makes a second switch (``br1``) and
gives every host an ``eth1`` on it; ``add_host(links=(1,))`` makes a host on ``br1`` alone.
Each switch numbers its hosts in the order they joined it, from the same 169.254/16 plan, so
the links overlap as two real link-local networks do: the same 169.254.x.y names different
hosts on the two switches (and a host on both may hold one address on both).

IPv6 (issue 16): ``VirtualLan(n, ipv6=True)`` leaves IPv6 on in the hosts and gives every link
an fe80:: address from a plan beside the IPv4 one (169.254.c.d -> fe80::a9fe:c:d, overlapping
across switches likewise) and nothing else: no kernel-made link-local, no duplicate address
detection (the plan makes each unique; a tentative address could not be bound), no router
solicitations. With ``ipv4=False`` the hosts are IPv6-only: no IPv4 address, no multicast
route, mDNS over ff02::fb; ``Host.address`` is then eth0's fe80:: address (unscoped) and the
host's own hosts file maps its name to it. The default LAN is as before: IPv4 only.

Works as root, or unprivileged inside ``scripts/userns-run`` (user + mount + net namespaces,
tmpfs on /run). ``available()`` says which.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bonjourgrid.testbed.host import (
    HOST_IF,
    IPV6_OFF,
    MULTICAST_NET,
    Host,
    HostLink,
    bridge_name,
    own_hosts_file,
)
from bonjourgrid.testbed.netns import (
    NETNS_DIR,
    VlanError,
    delete_netns,
    ip,
    ip_batch,
    kill_until_empty,
    netns_exists,
    netns_inode,
)

NAME_PREFIX = "bjg"
BRIDGE = "br0"
MAX_LINKS = 4
"""Switches a LAN may have (each host plugs into any of them)."""
# A bridge takes at most 1024 ports (BR_MAX_PORTS); the address plan spreads hosts over a few
# third octets (254 hosts each) above a random base.
MAX_HOSTS = 1000
_TOOLS = ("ip", "unshare", "sh", "hostname", "mount")
_HOSTS_HEADER = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def namespace_prefix(pid: int | None = None) -> str:
    """The prefix of every namespace made by LANs of process ``pid`` (default: this one)."""
    return f"{NAME_PREFIX}{os.getpid() if pid is None else pid}x"


def leftover_namespaces(pid: int | None = None) -> list[str]:
    """Namespaces named by LANs of process ``pid`` (default: this one) that still exist."""
    prefix = namespace_prefix(pid)
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except OSError:
        return []


def destroy_namespaces(names: Iterable[str]) -> None:
    """SIGKILL every process in the named namespaces, then delete them (for leak cleanup)."""
    names = list(names)
    inodes = {ino for name in names if (ino := netns_inode(name)) is not None}
    kill_until_empty(inodes, [])
    delete_netns(names)


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """Whether namespaces, veths and bridges can be made here, and why not if they cannot."""
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return False, f"missing tools: {', '.join(missing)}"
    if os.geteuid() != 0:
        return False, "needs root (or run under scripts/userns-run for unprivileged namespaces)"
    probe = f"{namespace_prefix()}{secrets.token_hex(2)}-probe"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", BRIDGE, "type", "bridge")
    except VlanError as exc:
        return False, f"cannot create a network namespace with a bridge: {exc}"
    finally:
        delete_netns([probe])
    return True, "network namespaces available"


class VirtualLan:
    """``n_hosts`` namespace hosts on one bridge; a context manager that always cleans up.

    ``name`` is an optional label added to the namespace names (``[A-Za-z0-9]``, ≤ 16 chars).
    ``ipv4``/``ipv6``: the families the hosts' links get (default IPv4 alone, IPv6 off);
    ``ipv4=False, ipv6=True`` makes IPv6-only hosts, each link with its fe80:: address only.
    """

    def __init__(
        self,
        n_hosts: int,
        *,
        base_dir: Path,
        name: str | None = None,
        links: int = 1,
        ipv4: bool = True,
        ipv6: bool = False,
    ) -> None:
        if not 1 <= links <= MAX_LINKS:
            raise ValueError(f"links must be in 1..{MAX_LINKS}")
        if not (ipv4 or ipv6):
            raise ValueError("a LAN needs IPv4, IPv6 or both")
        if not 0 <= n_hosts <= MAX_HOSTS:
            raise ValueError(f"n_hosts must be in 0..{MAX_HOSTS}")
        if name is not None and not (name.isascii() and name.isalnum() and len(name) <= 16):
            raise ValueError(f"bad LAN name {name!r}: want [A-Za-z0-9]{{1,16}}")
        self.name = name
        self.prefix = namespace_prefix() + secrets.token_hex(2) + (f"-{name}" if name else "")
        self.bridge_ns = f"{self.prefix}-sw"
        self.base_dir = Path(base_dir)
        self.hosts_file = self.base_dir / f".{self.prefix}.hosts"
        """The LAN's base hosts file (localhost only); each host's own is beside it
        (:func:`own_hosts_file`), bind-mounted over ``/etc/hosts`` in that host."""
        self.hosts: list[Host] = []
        self._n_hosts = n_hosts
        self.links = links
        """How many switches (bridges ``br0``, ``br1``, ...) the LAN has."""
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self._members = [0] * links  # hosts joined to each switch so far
        # 169.254.0.x and 169.254.255.x are reserved (RFC 3927 §2.1).
        self._octet3 = 1 + secrets.randbelow(254 - (MAX_HOSTS - 1) // 254)
        self._lock = threading.RLock()
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"VirtualLan({self.prefix!r}, hosts={len(self.hosts)})"

    @property
    def network(self) -> str:
        """The LAN's link-local network, in CIDR form."""
        return "169.254.0.0/16"

    def start(self) -> VirtualLan:
        """Create the switch and the hosts (once). On failure, undo everything and raise."""
        with self._lock:
            if self._closed:
                raise VlanError(f"{self.prefix} is closed")
            if self._started:
                return self
            self._started = True
            _register(self)
            try:
                self.base_dir.mkdir(parents=True, exist_ok=True)
                self.hosts_file.write_text(_HOSTS_HEADER)
                os.chmod(self.hosts_file, 0o644)
                ip("netns", "add", self.bridge_ns)
                ip("netns", "exec", self.bridge_ns, *IPV6_OFF)
                # Snooping off: multicast (mDNS) floods to every port, no IGMP needed.
                ip_batch(
                    self.bridge_ns,
                    [
                        cmd
                        for b in range(self.links)
                        for cmd in (
                            f"link add {bridge_name(b)} type bridge mcast_snooping 0",
                            f"link set {bridge_name(b)} up",
                        )
                    ],
                )
                for _ in range(self._n_hosts):
                    self._add_host()
            except BaseException:
                self.close()
                raise
        return self

    def add_host(self, links: Sequence[int] | None = None) -> Host:
        """Add one more host to the running LAN, plugged into the switches ``links`` (bridge
        numbers, default all; the first becomes its ``eth0``, the next ``eth1``)."""
        with self._lock:
            if not self._started or self._closed:
                raise VlanError(f"{self.prefix} is not running")
            return self._add_host(links)

    def close(self) -> None:
        """Kill every process in every host, delete all namespaces. Safe to call again."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            inodes: set[int] = set()
            procs: list[subprocess.Popen[Any]] = []
            for host in self.hosts:
                inode, host_procs = host._close()
                procs += host_procs
                if inode is not None:
                    inodes.add(inode)
            survivors = kill_until_empty(inodes, procs)
            delete_netns([h.netns for h in self.hosts] + [self.bridge_ns])
        finally:
            _unregister(self)
            for path in [
                self.hosts_file,
                *(own_hosts_file(self.hosts_file, h.name) for h in self.hosts),
            ]:
                with contextlib.suppress(OSError):
                    path.unlink()
        left = [n for n in [h.netns for h in self.hosts] + [self.bridge_ns] if netns_exists(n)]
        if survivors or left:
            raise VlanError(f"{self.prefix}: survivors {survivors}, namespaces left {left}")

    def __enter__(self) -> VirtualLan:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _address(self, member: int) -> str:
        """The address plan: the ``member``-th host joined to a switch (from 1)."""
        return f"169.254.{self._octet3 + (member - 1) // 254}.{(member - 1) % 254 + 1}"

    def _address6(self, member: int) -> str:
        """The IPv6 plan, beside the IPv4 one: 169.254.c.d is fe80::a9fe:c:d, so the switches
        overlap in IPv6 as in IPv4 (a link-local address means nothing without its link)."""
        c, d = self._address(member).split(".")[2:]
        return f"fe80::a9fe:{int(c):x}:{int(d):x}"

    def _add_host(self, bridges: Sequence[int] | None = None) -> Host:
        if len(self.hosts) >= MAX_HOSTS:
            raise VlanError(f"a LAN holds at most {MAX_HOSTS} hosts")
        bridges = list(range(self.links)) if bridges is None else list(bridges)
        if (
            not bridges
            or len(set(bridges)) != len(bridges)
            or not set(bridges) <= set(range(self.links))
        ):
            raise ValueError(f"links must be distinct bridge numbers in 0..{self.links - 1}")
        index = len(self.hosts) + 1
        links = []
        for n, b in enumerate(bridges):
            self._members[b] += 1
            port = f"vh{index}" if n == 0 else f"vh{index}l{n}"
            v6 = self._address6(self._members[b]) if self.ipv6 else ""
            v4 = self._address(self._members[b]) if self.ipv4 else v6
            links.append(HostLink(f"eth{n}", b, port, v4, v6))
        address = links[0].address
        host = Host(self, index, address, self.base_dir / f"h{index}", links)
        self.hosts.append(host)  # before creation, so close() cleans up a half-made host
        own = own_hosts_file(self.hosts_file, host.name)
        names = dict.fromkeys(a for a in (links[0].ipv4, links[0].ipv6) if a)
        own.write_text(_HOSTS_HEADER + "".join(f"{a}\t{host.name}\n" for a in names))
        os.chmod(own, 0o644)
        host._create(16)
        return host


# -- process and namespace plumbing --------------------------------------------------------------

_open_lans: set[VirtualLan] = set()
_registry_lock = threading.Lock()
_atexit_registered = False


def _register(lan: VirtualLan) -> None:
    global _atexit_registered
    with _registry_lock:
        _open_lans.add(lan)
        if not _atexit_registered:
            atexit.register(_close_open_lans)
            _atexit_registered = True


def _unregister(lan: VirtualLan) -> None:
    with _registry_lock:
        _open_lans.discard(lan)


def _close_open_lans() -> None:
    with _registry_lock:
        lans = list(_open_lans)
    for lan in lans:
        with contextlib.suppress(VlanError):
            lan.close()


__all__ = [  # Host, HostLink and VlanError are re-exported: the public API is here
    "BRIDGE",
    "HOST_IF",
    "MULTICAST_NET",
    "Host",
    "HostLink",
    "VirtualLan",
    "VlanError",
    "available",
    "destroy_namespaces",
    "leftover_namespaces",
    "namespace_prefix",
]
