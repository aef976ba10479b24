"""Which interfaces (links) and addresses our mDNS stacks bind to.

Never ``InterfaceChoice.Default`` (it fails on link-local-only hosts and splits replies with
avahi: DESIGN.md "mDNS facts"): always explicit addresses, by default every address of every
interface that is UP and MULTICAST-capable and not loopback. ``select_links`` groups them by
interface — discovery runs one stack per link (docs/discovery.md "Multi-homed hosts") — with
each link's IPv6 link-local addresses (fe80::/10, not tentative: read from
``/proc/net/if_inet6``, so an address still in duplicate address detection joins at a later
poll, once it can be bound).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ifaddr

# Linux interface flags (include/uapi/linux/if.h), read from /sys/class/net/<if>/flags.
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_MULTICAST = 0x1000

SYS_CLASS_NET = Path("/sys/class/net")
PROC_IF_INET6 = Path("/proc/net/if_inet6")
# IPv6 address flags (include/uapi/linux/if_addr.h): not usable yet / never.
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40


class DiscoveryError(Exception):
    """Discovery cannot do what was asked (e.g. a requested interface does not exist)."""


@dataclass(frozen=True)
class Interface:
    name: str
    flags: int
    ipv4: tuple[str, ...]
    index: int = 0
    ipv6: tuple[str, ...] = ()
    """Usable IPv6 link-local addresses, without scope."""

    @property
    def usable(self) -> bool:
        """UP, MULTICAST-capable and not loopback: where mDNS can go by default."""
        up_mcast = IFF_UP | IFF_MULTICAST
        return self.flags & up_mcast == up_mcast and not self.flags & IFF_LOOPBACK


def _flags(name: str) -> int:
    try:
        return int((SYS_CLASS_NET / name / "flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return 0


@dataclass(frozen=True)
class Link:
    """One interface our mDNS runs on, with the addresses bound and advertised there."""

    name: str
    index: int
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]

    @property
    def addresses(self) -> list[str]:
        return [*self.ipv4, *self.ipv6]


def parse_if_inet6(text: str) -> dict[str, list[str]]:
    """Usable IPv6 link-local addresses per interface name, from ``/proc/net/if_inet6`` text
    (``addr index prefixlen scope flags name`` per line). Pure; bad lines are skipped."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue
        hex_addr, _index, _plen, _scope, hex_flags, name = parts
        try:
            addr = ipaddress.IPv6Address(bytes.fromhex(hex_addr))
            flags = int(hex_flags, 16)
        except ValueError:
            continue
        if addr.is_link_local and not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            out.setdefault(name, []).append(str(addr))
    return out


def _link_local_ipv6() -> dict[str, list[str]]:
    try:
        return parse_if_inet6(PROC_IF_INET6.read_text())
    except OSError:  # no IPv6 in this kernel
        return {}


def list_interfaces() -> list[Interface]:
    """This host's interfaces with their flags, IPv4 and usable IPv6 link-local addresses."""
    out = []
    v6 = _link_local_ipv6()
    for adapter in ifaddr.get_adapters():
        ipv4 = tuple(str(ip.ip) for ip in adapter.ips if isinstance(ip.ip, str))
        ipv6 = tuple(sorted(v6.get(adapter.name, ())))
        index = adapter.index or 0
        out.append(Interface(adapter.name, _flags(adapter.name), ipv4, index, ipv6))
    return out


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def select_addresses(requested: Sequence[str] = ()) -> list[str]:
    """IPv4 addresses to bind, sorted and without duplicates.

    ``requested`` empty: every usable interface's IPv4 addresses (possibly none). Otherwise each
    entry is an interface name (all its IPv4 addresses) or one of this host's IPv4 addresses.
    Raises DiscoveryError naming the entries that match nothing.
    """
    interfaces = list_interfaces()
    if not requested:
        return sorted({a for i in interfaces if i.usable for a in i.ipv4}, key=_sort_key)
    by_name = {i.name: i for i in interfaces}
    own = {a for i in interfaces for a in i.ipv4}
    chosen: set[str] = set()
    missing: list[str] = []
    for entry in requested:
        if entry in by_name and by_name[entry].ipv4:
            chosen.update(by_name[entry].ipv4)
        elif _is_ipv4(entry) and entry in own:
            chosen.add(entry)
        else:
            missing.append(entry)
    if missing:
        raise DiscoveryError(
            "no such interface or IPv4 address on this host: " + ", ".join(missing)
        )
    return sorted(chosen, key=_sort_key)


def select_links(requested: Sequence[str] = (), *, ipv6: bool = True) -> list[Link]:
    """The links to run mDNS on, sorted by name, each with its addresses.

    ``requested`` empty: every usable interface with an address. Otherwise as
    ``select_addresses``: an interface name takes all its addresses (IPv4 and IPv6
    link-local), an IPv4 address only itself. ``ipv6=False`` leaves IPv6 out. Raises
    DiscoveryError naming the entries that match nothing.
    """
    interfaces = list_interfaces()
    by_name = {i.name: i for i in interfaces}
    v4: dict[str, set[str]] = {}
    v6: dict[str, set[str]] = {}
    if not requested:
        for i in interfaces:
            if i.usable:
                v4[i.name] = set(i.ipv4)
                v6[i.name] = set(i.ipv6)
    else:
        owner = {a: i.name for i in interfaces for a in i.ipv4}
        missing: list[str] = []
        for entry in requested:
            if entry in by_name and (by_name[entry].ipv4 or by_name[entry].ipv6):
                v4.setdefault(entry, set()).update(by_name[entry].ipv4)
                v6.setdefault(entry, set()).update(by_name[entry].ipv6)
            elif _is_ipv4(entry) and entry in owner:
                v4.setdefault(owner[entry], set()).add(entry)
            else:
                missing.append(entry)
        if missing:
            raise DiscoveryError(
                "no such interface or IPv4 address on this host: " + ", ".join(missing)
            )
    links = []
    for name in sorted(v4):
        ipv4 = tuple(sorted(v4[name], key=_sort_key))
        ipv6_ = tuple(sorted(v6.get(name, ()))) if ipv6 else ()
        if ipv4 or ipv6_:
            links.append(Link(name, by_name[name].index, ipv4, ipv6_))
    return links


def _sort_key(address: str) -> int:
    return int(ipaddress.IPv4Address(address))
