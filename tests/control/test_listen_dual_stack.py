"""The daemon's control port listens on both families ("::", dual-stack) and falls back to
IPv4 alone when the kernel has no IPv6 — real sockets on loopback."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from bonjourgrid.control import Channel, Ping, Pong, connect, serve
from bonjourgrid.control.dial import listen_socket

from .test_channel import COORD, KEY, VOL, Run, Volunteer


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _ping(address: str, port: int) -> Channel:
    ch = await connect(address, port, key=KEY, node=COORD, timeout=5)
    assert isinstance(await ch.request(Ping(), timeout=5), Pong)
    return ch


def test_dual_stack_port_answers_ipv4_and_ipv6_peers_on_one_port(run: Run) -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")

    async def main() -> None:
        server = await serve("::", 0, key=KEY, node=VOL, on_channel=Volunteer())
        async with server:
            assert len(server.sockets) == 1 and server.sockets[0].family == socket.AF_INET6
            port = server.sockets[0].getsockname()[1]
            for address in ("127.0.0.1", "::1"):
                ch = await _ping(address, port)
                assert ch.peer_node == VOL.node_id
                await ch.close()

    run(main())


def test_peer_reached_over_ipv4_is_named_by_its_ipv4_address_not_the_mapped_one(
    run: Run,
) -> None:
    seen: list[Any] = []

    async def record(channel: Channel) -> None:
        seen.append(channel.peer_address)
        await Volunteer()(channel)

    async def main() -> None:
        server = await serve("::", 0, key=KEY, node=VOL, on_channel=record)
        async with server:
            ch = await _ping("127.0.0.1", server.sockets[0].getsockname()[1])
            await ch.close()

    run(main())
    assert seen and seen[0][0] == "127.0.0.1", seen  # not ::ffff:127.0.0.1


def test_without_ipv6_in_the_kernel_the_port_listens_on_ipv4_alone(
    run: Run, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_socket = socket.socket

    def no_inet6(family: int = socket.AF_INET, *args: Any, **kw: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real_socket(family, *args, **kw)

    monkeypatch.setattr(socket, "socket", no_inet6)  # dial.py makes its sockets so
    caplog.set_level(logging.DEBUG, logger="bonjourgrid.control.dial")
    assert listen_socket("::", 0) is None
    assert "no IPv6 in this kernel" in caplog.text
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG]

    async def main() -> None:
        server = await serve("::", 0, key=KEY, node=VOL, on_channel=Volunteer())
        async with server:
            assert [s.family for s in server.sockets] == [socket.AF_INET]
            ch = await _ping("127.0.0.1", server.sockets[0].getsockname()[1])
            await ch.close()

    run(main())


def test_an_explicit_ipv4_listen_address_keeps_working(run: Run) -> None:
    async def main() -> None:
        server = await serve("0.0.0.0", 0, key=KEY, node=VOL, on_channel=Volunteer())
        async with server:
            assert [s.family for s in server.sockets] == [socket.AF_INET]
            ch = await _ping("127.0.0.1", server.sockets[0].getsockname()[1])
            await ch.close()

    run(main())


def test_a_port_held_by_another_socket_gives_no_half_made_dual_stack_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert listen_socket("::", port) is None  # EADDRINUSE: the caller's bind then fails
