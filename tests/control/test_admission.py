"""Bounds on handshakes in progress (pure) and the control server under a local flood
(real sockets on loopback)."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bonjourgrid.control.admission import HandshakeGate, RateLimitedLog, raise_open_files_limit
from bonjourgrid.control.channel import Channel, connect, serve
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.gridkey import GridKey

MEMBER = NodeKey(b"m" * 32)


def _closer(closed: list[str], name: str):  # type: ignore[no-untyped-def]
    return lambda: closed.append(name)


def test_a_peer_gets_at_most_its_share_and_the_rest_is_refused() -> None:
    gate = HandshakeGate(overall=10, per_peer=3)
    closed: list[str] = []
    tickets = [gate.admit("10.0.0.1", _closer(closed, f"a{i}"))[0] for i in range(3)]
    assert all(tickets)
    assert gate.admit("10.0.0.1", _closer(closed, "a3")) == (None, None)
    assert gate.admit("10.0.0.2", _closer(closed, "b0"))[0] is not None
    gate.release(tickets[0])
    gate.release(tickets[0])  # idempotent
    assert gate.admit("10.0.0.1", _closer(closed, "a4"))[0] is not None
    assert gate.in_progress == 4 and closed == []


def test_when_full_the_oldest_of_the_busiest_address_makes_room_for_a_newcomer() -> None:
    gate = HandshakeGate(overall=4, per_peer=3)
    closed: list[str] = []
    for i in range(3):
        gate.admit("attacker", _closer(closed, f"x{i}"))
    gate.admit("other", _closer(closed, "o0"))
    ticket, evicted = gate.admit("coordinator", _closer(closed, "c0"))
    assert ticket is not None and evicted is not None and evicted.peer == "attacker"
    assert closed == ["x0"] and gate.in_progress == 4
    # A newcomer from an address already holding as many as the busiest is refused.
    gate2 = HandshakeGate(overall=2, per_peer=2)
    gate2.admit("a", _closer(closed, "a"))
    gate2.admit("b", _closer(closed, "b"))
    assert gate2.admit("a", _closer(closed, "a2")) == (None, None)


def test_rate_limited_log_sums_up_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimitedLog(logging.getLogger("t"), burst=2, window=10.0)
    with caplog.at_level(logging.INFO):
        sent = [rl.log(0.0 + i * 0.01, logging.WARNING, "refused %d", i) for i in range(50)]
        assert sent.count(True) == 2
        assert rl.log(11.0, logging.WARNING, "refused %d", 99)
    assert "refused 99 (and 48 more like it not logged" in caplog.text
    assert caplog.text.count("refused") == 3


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        new_soft, new_hard = raise_open_files_limit()
        assert new_hard == hard and new_soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert new_soft == hard or hard == resource.RLIM_INFINITY
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.2) == b""
    except ConnectionError:
        return True
    except asyncio.TimeoutError:
        return False


async def _flood_then_member() -> tuple[int, int, list[str]]:
    key = GridKey.generate()
    served: list[str] = []

    async def on_channel(ch: Channel) -> None:
        served.append(ch.peer_node)

    server = await serve(
        "127.0.0.1", 0, key=key, node=NodeKey.generate(), on_channel=on_channel,
        handshake_timeout=30.0, max_handshakes=16, max_handshakes_per_peer=4,
    )  # fmt: skip
    port = server.sockets[0].getsockname()[1]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(200):  # idle: they never send a byte
            idle.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.3)
        closed = sum(await asyncio.gather(*(_closed_by_server(r) for r, _ in idle)))
        # A grid member still gets through (from another source address: 127.0.0.2).
        ch = await connect(
            "127.0.0.1", port, key=key, node=MEMBER, timeout=10, local_addr="127.0.0.2"
        )
        await ch.close()
        for _ in range(100):
            if served:
                break
            await asyncio.sleep(0.05)
        return closed, len(idle), served
    finally:
        for _, w in idle:
            w.transport.abort()
        server.close()
        await server.wait_closed()


def test_idle_connections_beyond_the_bound_are_closed_at_once_and_members_still_get_in(
    run: Callable[[Awaitable[Any]], Any],
) -> None:
    closed, opened, served = run(_flood_then_member())
    assert opened - closed == 4, (opened, closed)  # the per-address bound, held till deadline
    assert served == [MEMBER.node_id]
