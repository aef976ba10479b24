"""Which families and interfaces each link's zeroconf is given (discovery/link_stack.py)."""

from __future__ import annotations

from zeroconf import IPVersion

from bonjourgrid.discovery.interfaces import Link
from bonjourgrid.discovery.link_stack import stack_choice


def test_an_ipv6_only_link_runs_mdns_over_ipv6_alone_on_its_interface() -> None:
    assert stack_choice(Link("eth0", 2, (), ("fe80::1",))) == ([2], IPVersion.V6Only)


def test_a_dual_stack_link_runs_both_families() -> None:
    link = Link("eth0", 2, ("169.254.1.1",), ("fe80::1",))
    assert stack_choice(link) == (["169.254.1.1", 2], IPVersion.All)


def test_an_ipv4_only_link_stays_ipv4_only() -> None:
    link = Link("eth1", 3, ("169.254.1.1", "169.254.9.9"), ())
    assert stack_choice(link) == (["169.254.1.1", "169.254.9.9"], IPVersion.V4Only)
