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
import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bonjourgrid.paths import HOME_ENV
from bonjourgrid.testbed.netns import (
    KILL_WAIT_S,
    NETNS_DIR,
    delete_netns,
    ip,
    ip_batch,
    kill_until_empty,
    netns_exists,
    netns_inode,
    pids_by_netns,
)
from bonjourgrid.testbed.netns import (
    VlanError as VlanError,  # re-exported: the public API
)

NAME_PREFIX = "bjg"
BRIDGE = "br0"
MAX_LINKS = 4
"""Switches a LAN may have (each host plugs into any of them)."""
HOST_IF = "eth0"
MULTICAST_NET = "224.0.0.0/4"
# A bridge takes at most 1024 ports (BR_MAX_PORTS); the address plan spreads hosts over a few
# third octets (254 hosts each) above a random base.
MAX_HOSTS = 1000
_TOOLS = ("ip", "unshare", "sh", "hostname", "mount")
# Run in a namespace (sysctls under /proc/sys/net are per namespace); a kernel without IPv6 is fine.
_IPV6_OFF = (
    "sh",
    "-c",
    "cd /proc/sys/net/ipv6/conf 2>/dev/null || exit 0; echo 1 > all/disable_ipv6 && "
    "echo 1 > default/disable_ipv6",
)
# IPv6 on, for hosts of an IPv6 LAN: links born after this take the defaults. No duplicate
# address detection (each address is unique by the plan, and a tentative address cannot be
# bound), no kernel-made link-local (the plan gives each link its own), no router chatter.
_IPV6_ON = (
    "sh",
    "-c",
    "cd /proc/sys/net/ipv6/conf && for c in all default; do echo 0 > $c/disable_ipv6 && "
    "echo 0 > $c/accept_dad && echo 0 > $c/accept_ra && echo 0 > $c/router_solicitations; "
    "done && echo 1 > default/addr_gen_mode",
)
# $0 the host name, $1 the LAN's hosts file, then the command. Runs in fresh UTS and mount
# namespaces (mounts from the root namespace still propagate in: slave propagation).
_ENTER_HOST = 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"'
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


@dataclass(frozen=True)
class HostLink:
    """One of a host's cables: its interface, the switch (bridge number) it plugs into, the
    switch port, and its link-local address: IPv4 (169.254/16), or on an IPv6-only LAN the
    IPv6 one (fe80::/64, unscoped); ``ipv6`` is its IPv6 link-local on an IPv6 LAN, else ""."""

    interface: str
    bridge: int
    port: str
    address: str
    ipv6: str = ""

    @property
    def ipv4(self) -> str:
        """Its IPv4 address, "" on an IPv6-only LAN."""
        return "" if self.address == self.ipv6 else self.address


class Host:
    """One machine of the LAN: a network namespace with ``eth0`` on the bridge (and ``eth1``
    on a second bridge when multi-homed: ``links``).

    Processes started with :meth:`popen`/:meth:`run` are tracked and die with the host
    (:meth:`kill9`) or the LAN (:meth:`VirtualLan.close`).
    """

    def __init__(
        self,
        lan: VirtualLan,
        index: int,
        address: str,
        home: Path,
        links: Sequence[HostLink] = (),
    ) -> None:
        self.index = index
        self.name = f"h{index}"
        self.netns = f"{lan.prefix}-{self.name}"
        self.address = address
        """eth0's IPv4 address (its fe80:: one, unscoped, on an IPv6-only LAN)."""
        self.links = list(links) or [HostLink(HOST_IF, 0, f"vh{index}", address)]
        self.home = home
        self._switch_ns = lan.bridge_ns
        self._hosts_file = own_hosts_file(lan.hosts_file, self.name)
        """This host's ``/etc/hosts``: localhost and its own name only."""
        self._inode: int | None = None
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r}, address={self.address!r})"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A copy of this process's environment with ``BJGRID_HOME`` set to the host's home."""
        env = dict(os.environ)
        env[HOME_ENV] = str(self.home)
        if extra:
            env.update(extra)
        return env

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside the host; every step execs, so the pid is argv's."""
        if not argv:
            raise ValueError("empty argv")
        return [
            "ip", "netns", "exec", self.netns,
            "unshare", "--uts", "--mount", "--propagation", "slave",
            "sh", "-c", _ENTER_HOST, self.name, str(self._hosts_file),
            *argv,
        ]  # fmt: skip

    def popen(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: Any = None,
        stderr: Any = None,
        **kw: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host (its netns, its own UTS ns named after the host, its
        own mount ns with the LAN's ``/etc/hosts``).

        Defaults: ``env=self.env()``, stdin from /dev/null, a new session (terminal signals do
        not reach the host's processes; the LAN's owner stops them). The process is tracked.
        """
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        with self._lock:
            if self._closed:
                raise VlanError(f"{self.name} is closed")
            proc = subprocess.Popen(
                self.command(argv),
                env=dict(self.env() if env is None else env),
                stdout=stdout,
                stderr=stderr,
                **kw,
            )
            self._procs.append(proc)
        return proc

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Like ``subprocess.run(argv, capture_output=True)``, inside the host."""
        proc = self.popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=KILL_WAIT_S)
            raise subprocess.TimeoutExpired(list(argv), timeout, out, err) from None
        finally:
            self._untrack(proc)
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    def pids(self) -> list[int]:
        """Every process in the host's network namespace (as ``ip netns pids``)."""
        inode = self._ns_inode()
        return [] if inode is None else sorted(pids_by_netns({inode}).get(inode, []))

    def kill9(self) -> None:
        """Crash the host: SIGKILL every process in its namespace and wait until all are gone."""
        inode = self._ns_inode()
        with self._lock:
            procs = list(self._procs)
            self._procs.clear()
        survivors = kill_until_empty(set() if inode is None else {inode}, procs)
        if survivors:
            raise VlanError(f"{self.name}: processes survived SIGKILL: {survivors}")

    def terminate(self, proc: subprocess.Popen[Any], timeout: float = 5) -> int:
        """SIGTERM one tracked process, wait for it (SIGKILL after ``timeout``); its exit code."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(KILL_WAIT_S)
        self._untrack(proc)
        return proc.returncode

    def link_down(self, interface: str | None = None) -> None:
        """Cut the host's cables (or the one of ``interface``): switch ports go down."""
        for link in self._links_of(interface):
            ip("-n", self._switch_ns, "link", "set", link.port, "down")

    def link_up(self, interface: str | None = None) -> None:
        """Plug the cables (or the one of ``interface``) back in."""
        for link in self._links_of(interface):
            ip("-n", self._switch_ns, "link", "set", link.port, "up")

    def counters(self) -> dict[str, dict[str, int]]:
        """Per interface of the host, its kernel counters (``tx_bytes``, ``rx_packets``, ...)
        as ``ip -s link`` reads them inside the host's namespace."""
        res = subprocess.run(
            ["ip", "-n", self.netns, "-j", "-s", "link", "show"],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise VlanError(f"{self.name}: ip -s link: {res.stderr.strip()}")
        out: dict[str, dict[str, int]] = {}
        for dev in json.loads(res.stdout):
            stats = dev.get("stats64") or dev.get("stats") or {}
            row = {f"rx_{k}": int(v) for k, v in stats.get("rx", {}).items()}
            row.update({f"tx_{k}": int(v) for k, v in stats.get("tx", {}).items()})
            out[str(dev.get("ifname", "")).split("@")[0]] = row
        return out

    def _links_of(self, interface: str | None) -> list[HostLink]:
        links = [lk for lk in self.links if interface in (None, lk.interface)]
        if not links:
            raise VlanError(f"{self.name} has no interface {interface}")
        return links

    # -- used by VirtualLan --------------------------------------------------------------------

    def _create(self, address_len: int) -> None:
        ip("netns", "add", self.netns)
        self._inode = netns_inode(self.netns)
        # Before eth0 exists, so it is born without IPv6 (no DAD/RS/MLD chatter).
        # (Or with IPv6 on exactly as the plan says, on an IPv6 LAN.)
        ipv6 = any(link.ipv6 for link in self.links)
        ip("netns", "exec", self.netns, *(_IPV6_ON if ipv6 else _IPV6_OFF))
        switch: list[str] = []
        host = ["link set lo up"]
        for n, link in enumerate(self.links):
            switch += [
                f"link add {link.port} type veth peer name {link.interface} netns {self.netns}",
                f"link set {link.port} master {bridge_name(link.bridge)} up",
            ]
            if link.ipv6:  # nodad: usable at once, never tentative
                host.append(f"addr add {link.ipv6}/64 dev {link.interface} nodad")
            if link.ipv4:
                host.append(f"addr add {link.ipv4}/{address_len} dev {link.interface}")
            host.append(f"link set {link.interface} up")
            if link.ipv4:
                host.append(f"route add {MULTICAST_NET} dev {link.interface} metric {n}")
        ip_batch(self._switch_ns, switch)
        ip_batch(self.netns, host)
        self.home.mkdir(parents=True, exist_ok=True)

    def _ns_inode(self) -> int | None:
        if self._inode is None:
            self._inode = netns_inode(self.netns)
        return self._inode

    def _close(self) -> tuple[int | None, list[subprocess.Popen[Any]]]:
        with self._lock:
            self._closed = True
            procs = list(self._procs)
            self._procs.clear()
        return self._ns_inode(), procs

    def _untrack(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)


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
                ip("netns", "exec", self.bridge_ns, *_IPV6_OFF)
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


def bridge_name(number: int) -> str:
    """The switch namespace's bridge ``number``: ``br0`` (``BRIDGE``), ``br1``, ..."""
    return f"br{number}"


def own_hosts_file(lan_hosts_file: Path, host_name: str) -> Path:
    """Where host ``host_name`` of the LAN whose base hosts file is ``lan_hosts_file`` keeps
    its own ``/etc/hosts``."""
    return lan_hosts_file.with_name(f"{lan_hosts_file.stem}.{host_name}.hosts")


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
