"""BOINC test helpers: the boinc-client requirement, and sockets made inside a LAN host."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable

import pytest

from bonjourgrid.ce_backends.boinc.client import boinc_executable

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_CLONE_NEWNET = 0x40000000


def require_boinc() -> None:
    """Skip (locally) or fail (in CI) when Debian's boinc-client is not installed."""
    if boinc_executable() is None:
        reason = "boinc-client not installed (scripts/setup-boinc installs it)"
        if IN_CI:
            pytest.fail(f"{reason}; CI must have it", pytrace=False)
        pytest.skip(reason)


def netns_socket_factory(netns: str) -> Callable[[], socket.socket]:
    """A factory of TCP sockets living in network namespace ``netns``.

    A socket belongs to the namespace of the thread that created it; a short-lived thread
    enters ``netns`` (setns is per thread), makes the socket and ends, so this process's own
    threads never leave the root namespace.
    """

    def make() -> socket.socket:
        box: list[socket.socket | BaseException] = []

        def inside() -> None:
            try:
                fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns({netns})")
                finally:
                    os.close(fd)
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                box.append(s)
            except BaseException as e:  # handed to the caller
                box.append(e)

        t = threading.Thread(target=inside, name=f"netns-{netns}")
        t.start()
        t.join()
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result

    return make
