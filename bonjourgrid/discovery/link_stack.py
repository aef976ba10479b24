"""One mDNS stack on one link: an ``AsyncZeroconf`` whose sockets are tied to one interface.

Why one stack per link: python-zeroconf does not say which interface an IPv4 answer arrived on
(an IPv6 one carries its scope id), and a laptop with Wi-Fi and Ethernet both in 169.254/16
cannot tell from the address. A stack whose sockets are bound to one device
(``SO_BINDTODEVICE``) hears only that link, so every record it learns belongs to it; and it
answers there with that link's addresses only (RFC 6762 §15), so peers never learn an address
of ours that lives on another link. Where the kernel refuses the binding (no CAP_NET_RAW
before Linux 5.7) the stack still runs, unbound (``bound`` False): IPv4 addresses it learns are
then kept unscoped and the kernel's routing picks (IPv6 keeps zeroconf's scope ids).

The sockets are zeroconf's own, reached through its engine before its transports start (they
start at the loop's next turn): the one place we look inside zeroconf. If that ever changes,
the stack runs unbound and says so.

Also joins the IPv4 mDNS group by interface index: zeroconf joins by interface address, which
picks the wrong device when two of ours hold the same 169.254 address.

Threading: all in the loop that opened it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Awaitable, Sequence

from zeroconf import IPVersion, NotRunningException, ServiceInfo
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from bonjourgrid.control.addresses import scoped
from bonjourgrid.control.dial import bind_to_device

from .interfaces import Link

log = logging.getLogger(__name__)

_START_POLL = 0.02
"""How often a starting stack is looked at (a start normally takes a few milliseconds)."""
_MDNS_GROUP = "224.0.0.251"


class StackLost(Exception):
    """The stack is not running (zeroconf's NotRunningException): restart it."""


class LinkStack:
    """The mDNS stack of one link, its browser, and the announcements it is still sending."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.aiozc: AsyncZeroconf | None = None
        self.browser: AsyncServiceBrowser | None = None
        self.bound = False
        """Its sockets hear and speak on ``link`` only."""
        self.volunteer_info: ServiceInfo | None = None
        self.coord_infos: dict[str, ServiceInfo] = {}
        self._broadcasts: dict[str, asyncio.Future[object]] = {}  # by ServiceInfo.key

    def __repr__(self) -> str:
        return f"LinkStack({self.link.name!r}, bound={self.bound})"

    # --- life cycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Creates the stack (OSError if an address vanished) and ties it to the link."""
        interfaces, version = stack_choice(self.link)
        self.aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=version)
        self.bound = self._tie_to_link()

    def _tie_to_link(self) -> bool:
        assert self.aiozc is not None
        engine = self.aiozc.zeroconf.engine
        listen = getattr(engine, "_listen_socket", None)
        respond = getattr(engine, "_respond_sockets", None)
        if not isinstance(respond, list):
            log.warning("mDNS on %s: cannot reach zeroconf's sockets; unbound", self.link.name)
            return False
        socks = [s for s in [listen, *respond] if isinstance(s, socket.socket)]
        bound = all([bind_to_device(s, self.link.name) for s in socks])
        if not bound:
            log.warning(
                "mDNS on %s: cannot bind to the device (needs CAP_NET_RAW before Linux 5.7); "
                "IPv4 peers found there are reached by the kernel's route",
                self.link.name,
            )
        if isinstance(listen, socket.socket) and self.link.ipv4 and self.link.index:
            mreqn = socket.inet_aton(_MDNS_GROUP) + bytes(4) + struct.pack("@i", self.link.index)
            with contextlib.suppress(OSError):  # EADDRINUSE: zeroconf's join was right
                listen.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        return bound

    async def wait_running(self, start_wait: float, patience: float) -> bool:
        """Whether the engine runs within ``patience`` (see service.py's module doc).

        Polls ``Zeroconf.started`` rather than calling ``async_wait_for_start``: when that
        wait times out, zeroconf resolves the engine's start future with None, and the
        instance can then never count as started (every later registration raises
        NotRunningException) — the cause of the crash of issue 16.
        """
        assert self.aiozc is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_note = started + start_wait
        while not self.aiozc.zeroconf.started:
            now = loop.time()
            if self.aiozc.zeroconf.done or now - started >= patience:
                log.warning(
                    "mDNS stack on %s not running after %.1f s; closing it, will retry",
                    self.link.name,
                    now - started,
                )
                return False
            if now >= next_note:
                log.warning(
                    "mDNS stack slow to start on %s (%.1f s so far); still waiting",
                    self.link.name,
                    now - started,
                )
                next_note = now + start_wait
            await asyncio.sleep(_START_POLL)
        if loop.time() - started > start_wait:
            log.info("mDNS stack on %s up after %.1f s", self.link.name, loop.time() - started)
        return True

    async def close(self) -> None:
        """Stops browsing, sends goodbyes for everything registered, closes."""
        self._cancel_all()
        if self.browser is not None:
            await self.browser.async_cancel()
            self.browser = None
        if self.aiozc is not None:
            aiozc, self.aiozc = self.aiozc, None
            try:
                await aiozc.async_close()  # unregister all (goodbyes), then close
            except OSError as e:  # the interface may be gone already
                log.info("closing mDNS on %s: %s", self.link.name, e)
        self.volunteer_info = None
        self.coord_infos.clear()

    async def drop(self) -> None:
        """Closes a stack that never ran or stopped: no goodbyes can go out on it."""
        self._cancel_all()
        aiozc, self.aiozc = self.aiozc, None
        self.volunteer_info = None
        self.coord_infos.clear()
        if aiozc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(aiozc.async_close(), 5.0)

    def _cancel_all(self) -> None:
        for future in self._broadcasts.values():
            future.cancel()
        self._broadcasts.clear()

    # --- records ------------------------------------------------------------------------

    async def register(self, info: ServiceInfo) -> None:
        """Registers without probing (our labels carry the node id). StackLost if stopped."""
        assert self.aiozc is not None
        self._cancel_broadcast(info)
        try:
            broadcast = await self.aiozc.async_register_service(info, cooperating_responders=True)
        except NotRunningException:
            raise StackLost(f"registering {info.name}") from None
        self._keep_broadcast(info, broadcast)

    async def update(self, info: ServiceInfo) -> None:
        assert self.aiozc is not None
        self._cancel_broadcast(info)
        try:
            broadcast = await self.aiozc.async_update_service(info)
        except NotRunningException:
            raise StackLost(f"updating {info.name}") from None
        self._keep_broadcast(info, broadcast)

    async def unregister(self, info: ServiceInfo) -> None:
        assert self.aiozc is not None
        self._cancel_broadcast(info)
        try:
            broadcast = await self.aiozc.async_unregister_service(info)
        except NotRunningException:
            raise StackLost(f"withdrawing {info.name}") from None
        self._keep_broadcast(info, broadcast)

    def _cancel_broadcast(self, info: ServiceInfo) -> None:
        """Stops the announcements (or goodbyes) still pending for ``info``'s name.

        zeroconf repeats each announcement for ~0.5 s from the ServiceInfo it was given and does
        not stop on unregister or update: left alone, a withdrawn record would be announced
        again, or an updated one with its old TXT.
        """
        pending = self._broadcasts.pop(info.key, None)
        if pending is not None:
            pending.cancel()

    def _keep_broadcast(self, info: ServiceInfo, broadcast: Awaitable[object]) -> None:
        future = asyncio.ensure_future(broadcast)
        self._broadcasts[info.key] = future
        future.add_done_callback(lambda f: self._forget_broadcast(info.key, f))

    def _forget_broadcast(self, key: str, future: asyncio.Future[object]) -> None:
        if self._broadcasts.get(key) is future:
            del self._broadcasts[key]


def stack_choice(link: Link) -> tuple[list[str | int], IPVersion]:
    """What zeroconf is given for ``link``: its IPv4 addresses and, when it has IPv6
    link-local addresses, its interface index (zeroconf joins ff02::fb there); and the
    families: ``All`` for a dual-stack link, ``V6Only`` for an IPv6-only one (mDNS over
    ff02::fb alone), ``V4Only`` else. Pure."""
    v4: list[str | int] = list(link.ipv4)
    if not link.ipv6:
        return v4, IPVersion.V4Only
    return [*v4, link.index], IPVersion.All if v4 else IPVersion.V6Only


def learned_addresses(
    ipv4: Sequence[str], ipv6: Sequence[str], link: Link, *, ipv4_scoped: bool
) -> tuple[str, ...]:
    """A peer's addresses as learned on ``link``: IPv4 scoped to it when its stack is bound to
    the device (else unscoped: we cannot know), IPv6 link-local scoped to the interface of
    zeroconf's scope id (``%<index>``; ``link`` when absent; left out when another link's and
    the stack is bound to this one, which hears this link alone), other IPv6 unscoped. Pure
    but for naming a foreign scope index (``if_indextoname``). Left out: anything malformed,
    and addresses no peer can be reached at (hostile records aiming our dialers elsewhere):
    loopback, unspecified, multicast, and IPv4-mapped or -compatible IPv6 (an IPv4 address in
    disguise)."""
    out: list[str] = []
    for a in ipv4:
        with contextlib.suppress(ValueError):
            if _reachable(ipaddress.IPv4Address(a)):
                out.append(scoped(a, link.name if ipv4_scoped else None))
    for a in ipv6:
        bare, _, zone = a.partition("%")
        try:
            ip = ipaddress.IPv6Address(bare)
            if not _reachable(ip):
                continue
            if not ip.is_link_local:
                out.append(str(ip))
                continue
            interface = link.name
            if zone.isdigit() and int(zone) != link.index:
                if ipv4_scoped:  # heard on another link by a stack bound to this one: bogus
                    continue
                interface = socket.if_indextoname(int(zone))
            out.append(scoped(str(ip), interface))
        except (ValueError, OSError):
            continue
    return tuple(dict.fromkeys(out))


def _reachable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a peer could be reached at ``ip``: not loopback, unspecified or multicast, and
    (IPv6) no IPv4 address wrapped in IPv6 (``::ffff:127.0.0.1`` is our own loopback)."""
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped is None and int(ip) >> 32 != 0  # ::a.b.c.d (compatible)
    return True
