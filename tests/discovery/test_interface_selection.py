"""Interface selection reads this host's interfaces (no traffic): defaults and explicit picks."""

from __future__ import annotations

import json
import sys

import pytest

from bonjourgrid.discovery.interfaces import (
    DiscoveryError,
    select_addresses,
)


def test_an_interface_name_or_own_address_may_be_requested() -> None:
    assert select_addresses(["lo"]) == ["127.0.0.1"]
    assert select_addresses(["127.0.0.1", "lo"]) == ["127.0.0.1"]


def test_unknown_requests_raise_naming_each() -> None:
    with pytest.raises(DiscoveryError) as err:
        select_addresses(["lo", "nosuchif9", "192.0.2.77"])
    assert "nosuchif9" in str(err.value) and "192.0.2.77" in str(err.value)
    assert "lo" not in str(err.value).split(": ", 1)[1].split(", ")


SELECT = (
    "import json; from bonjourgrid.discovery import select_addresses as s; print(json.dumps(s()))"
)


def test_default_takes_up_multicast_non_loopback_interfaces_only(vlan) -> None:
    host = vlan(1).hosts[0]

    def selected() -> list[str]:
        res = host.run([sys.executable, "-c", SELECT], timeout=30)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def ip(*args: str) -> None:
        res = host.run(["ip", *args], timeout=10)
        assert res.returncode == 0, res.stderr

    assert selected() == [host.address]  # lo is up but loopback
    ip("link", "set", "eth0", "multicast", "off")
    assert selected() == []
    ip("link", "set", "eth0", "multicast", "on")
    ip("addr", "add", "10.9.8.7/24", "dev", "eth0")
    assert selected() == ["10.9.8.7", host.address]
    ip("link", "set", "eth0", "down")
    assert selected() == []
