"""The pairing invitation over mDNS/DNS-SD: ``_bjg-invite._tcp``, advertised by `bjgrid
invite` and browsed by `join --code` / `keygen --from-code`.

The record carries the version and the code's channel number only (``v=1 ch=7``): nothing
derived from the grid key or the code's words, so a listener learns only that an invitation
is open. Addresses learned are filtered like every other record's (``learned_addresses``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Sequence

from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from .interfaces import DiscoveryError, Link, select_links
from .link_stack import learned_addresses

log = logging.getLogger(__name__)

INVITE_TYPE = "_bjg-invite._tcp.local."
_VERSION = "1"
_RESOLVE_MS = 1500


def _ipv4_links(interfaces: Sequence[str]) -> list[Link]:
    links = [link for link in select_links(interfaces, ipv6=False) if link.ipv4]
    if not links:
        raise DiscoveryError("no usable IPv4 interface for pairing")
    return links


class InvitationAdvert:
    """Advertises one open invitation (channel, TCP port) until ``close``."""

    def __init__(self, channel: int, port: int, interfaces: Sequence[str] = ()) -> None:
        self.channel = channel
        self.port = port
        self._interfaces = tuple(interfaces)
        self._aiozc: AsyncZeroconf | None = None
        self._info: ServiceInfo | None = None

    async def start(self) -> None:
        links = _ipv4_links(self._interfaces)
        addresses = [a for link in links for a in link.ipv4]
        self._aiozc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
        label = f"invite-{secrets.token_hex(4)}"
        self._info = ServiceInfo(
            INVITE_TYPE,
            f"{label}.{INVITE_TYPE}",
            port=self.port,
            properties={"v": _VERSION, "ch": str(self.channel)},
            server=f"{label}.local.",
            parsed_addresses=addresses,
        )
        await self._aiozc.async_register_service(self._info)

    async def close(self) -> None:
        if self._aiozc is None:
            return
        if self._info is not None:
            with contextlib.suppress(Exception):
                await self._aiozc.async_unregister_service(self._info)
        await self._aiozc.async_close()
        self._aiozc = None


async def find_invitations(
    channel: int, *, timeout: float, interfaces: Sequence[str] = (), settle: float = 1.0
) -> list[tuple[str, int]]:
    """(address, port) of every open invitation on ``channel`` heard within ``timeout``
    seconds (it returns ``settle`` seconds after the first one, to hear any impostor too)."""
    links = _ipv4_links(interfaces)
    addresses = [a for link in links for a in link.ipv4]
    aiozc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
    found: dict[tuple[str, int], None] = {}
    first = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def resolve(zc: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(INVITE_TYPE, name)
        if not await info.async_request(zc, _RESOLVE_MS):
            return
        props = info.decoded_properties
        if props.get("v") != _VERSION or props.get("ch") != str(channel) or not info.port:
            return
        v4 = [a for a in info.parsed_addresses(IPVersion.V4Only) if _is_v4(a)]
        for a in learned_addresses(v4, (), links[0], ipv4_scoped=False)[:4]:
            found[(a, info.port)] = None
        if found:
            first.set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        wanted = (ServiceStateChange.Added, ServiceStateChange.Updated)
        if state_change in wanted and len(tasks) < 16:
            task = asyncio.get_running_loop().create_task(resolve(zeroconf, name))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    browser = AsyncServiceBrowser(aiozc.zeroconf, INVITE_TYPE, handlers=[on_change])
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), timeout)
        if found:
            await asyncio.sleep(settle)
    finally:
        await browser.async_cancel()
        for t in list(tasks):
            t.cancel()
        await aiozc.async_close()
    return list(found)[:8]


def _is_v4(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return text.count(".") == 3
