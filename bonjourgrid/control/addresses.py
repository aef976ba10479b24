"""Peer addresses with the interface they were learned on: ``169.254.7.9%eth1``, ``fe80::1%eth0``.

Pure: no I/O. A multi-homed host (Wi-Fi and Ethernet both in 169.254/16, the classic link-local
trap) cannot tell from an address alone which link it lives on, and an IPv6 link-local address
means nothing without its interface. So discovery keeps every address it learns with the
interface its answer arrived on, written as RFC 4007's zone suffix (``%<interface name>``) for
both families, and the dialer (control/dial.py) connects on that interface. An address without a
suffix is unscoped (our own records, static lists, loopback tests): the kernel's routing picks.

The suffix travels inside the address string, so every ``addresses`` tuple (Machine, Peer,
Offer) carries its scope unchanged; only what is shown to people strips it (``plain``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

MAX_INTERFACE_NAME = 15
"""Linux interface names are at most 15 bytes (IFNAMSIZ - 1)."""


def scoped(address: str, interface: str | None) -> str:
    """``address`` tagged with ``interface`` (unchanged when ``interface`` is None or empty).
    Raises ValueError for a malformed address or interface name."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if not interface:
        return str(ip)
    _check_interface(interface)
    return f"{ip}%{interface}"


def split_scope(text: str) -> tuple[str, str | None]:
    """(address, interface or None) of a possibly scoped address. Raises ValueError when the
    address or the interface name is malformed (hostile input never reaches a socket call)."""
    address, sep, interface = text.partition("%")
    ip = ipaddress.ip_address(address)
    if not sep:
        return str(ip), None
    _check_interface(interface)
    return str(ip), interface


def interface_of(text: str) -> str | None:
    """The interface of a scoped address, None if unscoped or malformed."""
    try:
        return split_scope(text)[1]
    except ValueError:
        return None


def plain(addresses: Iterable[str]) -> list[str]:
    """The addresses without their scope, first occurrence kept (for display and JSON)."""
    out: list[str] = []
    for a in addresses:
        bare = a.partition("%")[0]
        if bare not in out:
            out.append(bare)
    return out


def is_ipv6(text: str) -> bool:
    return ":" in text.partition("%")[0]


def order(addresses: Sequence[str], worked: str | None) -> list[str]:
    """The order to try ``addresses`` in: the one that ``worked`` last first, then the others
    of its family and interface, then the rest interleaved by family (IPv4 first), each family
    in advertised order — a happy-eyeballs-lite that keeps to what works and still reaches a
    peer whose IPv4 is broken. Duplicates are tried once."""
    unique = list(dict.fromkeys(addresses))
    if worked in unique:
        first = [worked]
        same = [
            a
            for a in unique
            if a != worked
            and is_ipv6(a) == is_ipv6(worked)
            and interface_of(a) == interface_of(worked)
        ]
        rest = [a for a in unique if a not in first and a not in same]
        return first + same + _interleave(rest)
    return _interleave(unique)


def _interleave(addresses: Sequence[str]) -> list[str]:
    v4 = [a for a in addresses if not is_ipv6(a)]
    v6 = [a for a in addresses if is_ipv6(a)]
    out: list[str] = []
    for i in range(max(len(v4), len(v6))):
        out += v4[i : i + 1] + v6[i : i + 1]
    return out


def _check_interface(name: str) -> None:
    # What Linux accepts (dev_valid_name): 1..15 bytes, no '/', no whitespace, not . or ..
    if (
        not name
        or len(name.encode()) > MAX_INTERFACE_NAME
        or name in (".", "..")
        or any(c in "/:%" or c.isspace() or not c.isprintable() for c in name)
    ):
        raise ValueError(f"bad interface name {name!r}")
