"""Hostile mDNS address records: a peer advertising an address that is no peer's (our own
loopback, a multicast group, an IPv4 address dressed as IPv6, a scope of another link) never
gets it into the view, so no dialer of ours is aimed at it (discovery/link_stack.py)."""

from __future__ import annotations

import pytest

from bonjourgrid.discovery.interfaces import Link
from bonjourgrid.discovery.link_stack import learned_addresses

LINK = Link("eth1", 3, ("169.254.1.1",), ("fe80::1",))


@pytest.mark.parametrize(
    "ipv4", ["127.0.0.1", "127.1.2.3", "0.0.0.0", "224.0.0.251", "239.255.255.250"]
)
def test_an_advertised_ipv4_loopback_unspecified_or_multicast_address_is_left_out(
    ipv4: str,
) -> None:
    got = learned_addresses([ipv4, "169.254.4.4"], [], LINK, ipv4_scoped=True)
    assert got == ("169.254.4.4%eth1",)


@pytest.mark.parametrize(
    "ipv6",
    ["::1", "::", "ff02::fb", "ff02::1%3", "::ffff:127.0.0.1", "::ffff:169.254.4.4",
     "::127.0.0.1", "::ffff:0.0.0.0"],
)  # fmt: skip
def test_an_advertised_ipv6_loopback_multicast_or_disguised_ipv4_address_is_left_out(
    ipv6: str,
) -> None:
    got = learned_addresses([], [ipv6, "fe80::4%3"], LINK, ipv4_scoped=True)
    assert got == ("fe80::4%eth1",)


def test_a_link_local_address_with_another_links_scope_is_left_out_by_a_bound_stack() -> None:
    # A stack bound to eth1 hears eth1 alone: a scope naming interface 1 (lo) cannot be true.
    got = learned_addresses([], ["fe80::4%1", "fe80::5%3", "fe80::6"], LINK, ipv4_scoped=True)
    assert got == ("fe80::5%eth1", "fe80::6%eth1")


def test_what_a_real_peer_advertises_is_kept() -> None:
    got = learned_addresses(["169.254.4.4"], ["fe80::4%3", "2001:db8::4"], LINK, ipv4_scoped=True)
    assert got == ("169.254.4.4%eth1", "fe80::4%eth1", "2001:db8::4")
