"""One machine of the virtual LAN (``vlan.py``): a network namespace with its cables, its own
``/etc/hosts`` and hostname, and the processes started in it (tracked: they die with the host
or the LAN).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bonjourgrid.paths import HOME_ENV
from bonjourgrid.testbed.netns import (
    KILL_WAIT_S,
    VlanError,
    ip,
    ip_batch,
    kill_until_empty,
    netns_inode,
    pids_by_netns,
)

if TYPE_CHECKING:
    from bonjourgrid.testbed.vlan import VirtualLan

HOST_IF = "eth0"
MULTICAST_NET = "224.0.0.0/4"
# Run in a namespace (sysctls under /proc/sys/net are per namespace); a kernel without IPv6 is fine.
IPV6_OFF = (
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
        ip("netns", "exec", self.netns, *(_IPV6_ON if ipv6 else IPV6_OFF))
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


def bridge_name(number: int) -> str:
    """The switch namespace's bridge ``number``: ``br0`` (``BRIDGE``), ``br1``, ..."""
    return f"br{number}"


def own_hosts_file(lan_hosts_file: Path, host_name: str) -> Path:
    """Where host ``host_name`` of the LAN whose base hosts file is ``lan_hosts_file`` keeps
    its own ``/etc/hosts``."""
    return lan_hosts_file.with_name(f"{lan_hosts_file.stem}.{host_name}.hosts")
