"""Shared fixtures. Virtual LAN: the ``vlan`` factory and mark, and the namespace-leak check."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.testbed import VirtualLan, available, destroy_namespaces, leftover_namespaces
from bonjourgrid.testbed.browser import chromium_path

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_vlan() -> None:
    """Skip (locally) or fail (in CI) when namespaces cannot be created here."""
    ok, reason = available()
    if not ok:
        if IN_CI:
            pytest.fail(f"virtual LAN unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"virtual LAN unavailable: {reason}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test using the vlan fixture is a vlan test, so `-m "not vlan"` deselects it.
    for item in items:
        if "vlan" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vlan)


def require_chromium() -> None:
    """Skip (locally) or fail (in CI) when Debian's chromium is missing."""
    if chromium_path() is None:
        if IN_CI:
            pytest.fail("chromium is not installed (scripts/setup --dev)", pytrace=False)
        pytest.skip("chromium is not installed (scripts/setup --dev installs it)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("vlan") is not None:
        require_vlan()
    if item.get_closest_marker("chromium") is not None:
        require_chromium()


@pytest.fixture
def vlan(tmp_path: Path) -> Iterator[Callable[..., VirtualLan]]:
    """Factory: ``vlan(n, name=None, **VirtualLan options)`` starts an n-host LAN; all are closed
    at teardown."""
    lans: list[VirtualLan] = []

    def make(n_hosts: int, *, name: str | None = None, **kw: Any) -> VirtualLan:
        lan = VirtualLan(n_hosts, base_dir=tmp_path / f"lan{len(lans)}", name=name, **kw)
        lans.append(lan)
        return lan.start()

    yield make
    errors = []
    for lan in lans:
        try:
            lan.close()
        except Exception as exc:  # close every LAN before reporting
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_namespaces() -> Iterator[None]:
    """Fail the session if a test left one of this process's namespaces behind."""
    yield
    leaked = leftover_namespaces()
    if leaked:
        destroy_namespaces(leaked)
        pytest.fail(f"tests leaked network namespaces: {leaked}", pytrace=False)
