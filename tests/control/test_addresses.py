"""Scoped peer addresses and the order they are tried in (pure: control/addresses.py)."""

from __future__ import annotations

import pytest

from bonjourgrid.control.addresses import order, plain, scoped, split_scope
from bonjourgrid.control.dial import Preferences
from bonjourgrid.discovery.interfaces import Link, parse_if_inet6
from bonjourgrid.discovery.link_stack import learned_addresses


def test_an_address_keeps_the_interface_it_was_learned_on() -> None:
    assert scoped("169.254.7.9", "eth1") == "169.254.7.9%eth1"
    assert split_scope("fe80::1%eth0") == ("fe80::1", "eth0")
    assert split_scope("169.254.7.9") == ("169.254.7.9", None)
    assert scoped("169.254.7.9", None) == "169.254.7.9"


@pytest.mark.parametrize(
    "hostile",
    ["169.254.1.1%", "169.254.1.1%../x", "fe80::1%a b", "fe80::1%" + "x" * 16, "evil%eth0",
     "169.254.1.1%eth0%eth1", "1.2.3.4%\x00"],
)  # fmt: skip
def test_a_malformed_address_or_interface_is_refused(hostile: str) -> None:
    with pytest.raises(ValueError):
        split_scope(hostile)


def test_plain_strips_scopes_for_display_once_each() -> None:
    assert plain(["169.254.1.2%eth0", "169.254.1.2%eth1", "fe80::1%eth0"]) == [
        "169.254.1.2",
        "fe80::1",
    ]


def test_what_worked_last_is_tried_first_then_its_link_then_families_interleaved() -> None:
    addrs = ["169.254.1.2%eth0", "169.254.9.9%eth0", "169.254.1.2%eth1", "fe80::2%eth0"]
    assert order(addrs, None) == [
        "169.254.1.2%eth0", "fe80::2%eth0", "169.254.9.9%eth0", "169.254.1.2%eth1",
    ]  # fmt: skip
    assert order(addrs, "169.254.1.2%eth1")[0] == "169.254.1.2%eth1"
    assert order(addrs, "fe80::2%eth0")[0] == "fe80::2%eth0"
    assert order(addrs, "10.0.0.1") == order(addrs, None)  # a forgotten address changes nothing
    assert sorted(order(addrs + addrs, None)) == sorted(addrs)


def test_preferences_remember_per_node_and_stay_bounded() -> None:
    p = Preferences(limit=2)
    p.worked("a", "fe80::1%eth0")
    assert p.order("a", ["169.254.1.1%eth0", "fe80::1%eth0"])[0] == "fe80::1%eth0"
    p.worked("b", "x")
    p.worked("c", "y")
    assert p.order("a", ["169.254.1.1%eth0", "fe80::1%eth0"])[0] == "169.254.1.1%eth0"


LINK = Link("eth1", 3, ("169.254.1.1",), ("fe80::1",))


def test_learned_addresses_are_scoped_to_the_link_or_to_zeroconfs_scope_id() -> None:
    got = learned_addresses(["169.254.4.4"], ["fe80::4%3", "2001:db8::4"], LINK, ipv4_scoped=True)
    assert got == ("169.254.4.4%eth1", "fe80::4%eth1", "2001:db8::4")


def test_an_unbound_stack_cannot_know_an_ipv4_link_and_leaves_it_unscoped() -> None:
    got = learned_addresses(["169.254.4.4"], ["fe80::4"], LINK, ipv4_scoped=False)
    assert got == ("169.254.4.4", "fe80::4%eth1")


def test_malformed_learned_addresses_are_left_out() -> None:
    got = learned_addresses(["x", "1.2.3"], ["fe80::4%999999", "zz::"], LINK, ipv4_scoped=True)
    assert got == ()


def test_tentative_and_failed_ipv6_addresses_are_not_bound() -> None:
    text = (
        "fe800000000000000000000000000001 03 40 20 80     eth1\n"  # permanent: usable
        "fe800000000000000000000000000002 03 40 20 40     eth1\n"  # tentative (DAD running)
        "fe800000000000000000000000000003 03 40 20 08     eth1\n"  # DAD failed
        "20010db8000000000000000000000004 03 40 00 00     eth1\n"  # global: not link-local
        "garbage line\n"
    )
    assert parse_if_inet6(text) == {"eth1": ["fe80::1"]}
