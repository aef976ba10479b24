"""Which IPv4 addresses our mDNS stack binds to.

Never ``InterfaceChoice.Default`` (it fails on link-local-only hosts and splits replies with
avahi: DESIGN.md "mDNS facts"): always an explicit address list, by default every address of
every interface that is UP and MULTICAST-capable and not loopback.
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


class DiscoveryError(Exception):
    """Discovery cannot do what was asked (e.g. a requested interface does not exist)."""


@dataclass(frozen=True)
class Interface:
    name: str
    flags: int
    ipv4: tuple[str, ...]

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


def list_interfaces() -> list[Interface]:
    """This host's interfaces with their flags and IPv4 addresses."""
    out = []
    for adapter in ifaddr.get_adapters():
        ipv4 = tuple(str(ip.ip) for ip in adapter.ips if isinstance(ip.ip, str))
        out.append(Interface(adapter.name, _flags(adapter.name), ipv4))
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


def _sort_key(address: str) -> int:
    return int(ipaddress.IPv4Address(address))
