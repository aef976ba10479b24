"""Opening TCP connections to peers on the interface they were learned on; the listen socket.

Every dialer (control/channel.py ``connect``, so recruitment, peers, status, election) comes
here, so a multi-homed host sends to a peer over the link its address belongs to:

- IPv6 link-local ``fe80::1%eth0``: the scope id of ``eth0`` in the socket address
  ``(addr, port, 0, scope_id)`` (without it the kernel refuses: EINVAL).
- IPv4 ``169.254.7.9%eth1``: the socket is bound to the device (``SO_BINDTODEVICE``) before it
  connects, so its packets leave on ``eth1`` even when ``eth0`` holds the same 169.254/16 route.
  Binding to a device needs CAP_NET_RAW on kernels before 5.7; when it is refused the connect
  goes unbound (the kernel's route), with a debug log — the handshake's node id check still
  refuses a wrong host reached over the wrong link.
- unscoped: as ``asyncio.open_connection``.

``Preferences`` remembers, per peer node, the address that worked last (``order`` in
control/addresses.py puts it first): a bounded map, the only state here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from collections.abc import Sequence

from bonjourgrid.control.addresses import order, split_scope

log = logging.getLogger(__name__)

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
"""Linux's option number (asm-generic/socket.h); Python exposes it on Linux only."""
MAX_REMEMBERED = 4096
"""Peers whose last working address is kept (oldest forgotten first): bounded memory."""


class Preferences:
    """Per peer node, the address a connection last succeeded at (proven by the handshake)."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._worked: OrderedDict[str, str] = OrderedDict()

    def worked(self, node: str, address: str) -> None:
        self._worked[node] = address
        self._worked.move_to_end(node)
        while len(self._worked) > self._limit:
            self._worked.popitem(last=False)

    def order(self, node: str, addresses: Sequence[str]) -> list[str]:
        """``addresses`` in the order to try them for ``node`` (control/addresses.py)."""
        return order(addresses, self._worked.get(node))


PREFERENCES = Preferences()
"""The process's memory of what worked (one per daemon, like its mDNS stack)."""


def bind_to_device(sock: socket.socket, interface: str) -> bool:
    """Ties ``sock`` to ``interface`` (its packets leave there, it hears only there); False if
    the kernel refuses (no privilege, no such device), logged at debug level."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
    except OSError as e:
        log.debug("cannot bind a socket to %s (%s); using the kernel's route", interface, e)
        return False
    return True


def sockaddr(address: str, port: int) -> tuple[int, tuple[str, int] | tuple[str, int, int, int]]:
    """(family, socket address) for a possibly scoped address. Raises ValueError (malformed)
    or OSError (no such interface)."""
    host, interface = split_scope(address)
    if ":" in host:
        scope = socket.if_nametoindex(interface) if interface else 0
        return socket.AF_INET6, (host, port, 0, scope)
    return socket.AF_INET, (host, port)


async def open_connection(
    address: str, port: int, *, interface: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP stream to ``address`` (scoped or not) on ``interface`` (default: its scope).
    OSError or ValueError on failure; the caller bounds the time."""
    if "%" not in address and not interface:
        return await asyncio.open_connection(address, port)  # names allowed, as before
    host, scope = split_scope(address)
    interface = interface or scope
    assert interface is not None
    family, addr = sockaddr(f"{host}%{interface}", port)
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # ``proto`` says TCP; with 0 every small frame after another waited for the peer's
    # delayed ACK (40 ms per message on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET:
            bind_to_device(sock, interface)
        await asyncio.get_running_loop().sock_connect(sock, addr)
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


def listen_socket(host: str, port: int) -> socket.socket | None:
    """For ``host`` "::" (the daemon's default): one dual-stack TCP socket (IPv6 and
    IPv4-mapped on one port), so peers reach us by either family at the port our records
    advertise. None when this kernel has no IPv6 (booted ``ipv6.disable=1``, or built without
    it: the caller listens on IPv4 alone, ``0.0.0.0``) or for any other ``host``. IPv6 turned
    off by sysctl (``disable_ipv6``, as on the test bed's IPv4 LANs) still makes the socket:
    it then serves IPv4 only, through mapped addresses."""
    if host != "::":
        return None
    if not socket.has_ipv6:
        log.debug("Python without IPv6; listening on IPv4 only")
        return None
    try:
        # IPPROTO_TCP: accepted sockets inherit it, so asyncio sets TCP_NODELAY on them
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as e:
        log.debug("no IPv6 in this kernel (%s); listening on IPv4 only", e)
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError as e:
        sock.close()
        log.debug("no dual-stack listen socket (%s); listening on IPv4 only", e)
        return None
    return sock


def unmapped(host: str) -> str:
    """``::ffff:169.254.1.2`` (an IPv4 peer on a dual-stack socket) as ``169.254.1.2``."""
    if host.lower().startswith("::ffff:") and "." in host:
        return host[7:]
    return host
