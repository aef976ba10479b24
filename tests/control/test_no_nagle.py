"""Every control connection runs with Nagle off (TCP_NODELAY), both the one a daemon dials on
the interface a peer was learned on and the one it accepts on its dual-stack port: with Nagle
on, a small frame sent after another waits for the peer's delayed ACK (40 ms on Linux), which
is what each task's RunTask used to pay. Real sockets on loopback."""

from __future__ import annotations

import socket

from bonjourgrid.control import Channel, Ping, Pong, connect, serve

from .test_channel import COORD, KEY, VOL, Run, Volunteer


def _nodelay(channel: Channel) -> bool:
    sock = channel._writer.get_extra_info("socket")
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_dialed_and_accepted_control_connections_have_nagle_off(run: Run) -> None:
    accepted: list[bool] = []

    async def record(channel: Channel) -> None:
        accepted.append(_nodelay(channel))
        await Volunteer()(channel)

    async def main() -> None:
        server = await serve("::", 0, key=KEY, node=VOL, on_channel=record)
        async with server:
            port = server.sockets[0].getsockname()[1]
            # scoped to an interface, as a peer learned over mDNS is dialed
            ch = await connect("127.0.0.1", port, key=KEY, node=COORD, timeout=5, interface="lo")
            assert isinstance(await ch.request(Ping(), timeout=5), Pong)
            assert _nodelay(ch)
            await ch.close()
        assert accepted == [True]

    run(main())
