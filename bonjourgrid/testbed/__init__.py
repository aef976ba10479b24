"""Test bed: a virtual LAN of network namespaces for tests, benchmarks and ``bjgrid demo``."""

from __future__ import annotations

from bonjourgrid.testbed.vlan import (
    Host,
    VirtualLan,
    VlanError,
    available,
    destroy_namespaces,
    leftover_namespaces,
    namespace_prefix,
)

__all__ = [
    "Host",
    "VirtualLan",
    "VlanError",
    "available",
    "destroy_namespaces",
    "leftover_namespaces",
    "namespace_prefix",
]
