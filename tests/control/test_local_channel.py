"""The plain local channel (CLI <-> daemon) over real Unix sockets in tmp_path."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.control import ChannelClosed, LocalChannel, Registry, open_local, serve_local

Run = Callable[[Awaitable[Any]], Any]

LOCAL = Registry("local-test")


@LOCAL.register(1)
@dataclass(frozen=True)
class Status:
    timeout: float


@LOCAL.register(2)
@dataclass(frozen=True)
class StatusReply:
    machines: list[object]


async def answer_status(channel: LocalChannel) -> None:
    try:
        while True:
            msg = await channel.recv()
            assert isinstance(msg, Status)
            await channel.send(StatusReply([{"id": "n1", "uid": channel.peer_uid}]))
    except ChannelClosed:
        pass


def test_local_request_reply_and_peer_uid(run: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")

    async def main() -> None:
        server = await serve_local(path, registry=LOCAL, on_channel=answer_status)
        async with server:
            ch = await open_local(path, registry=LOCAL, timeout=5)
            assert ch.peer_uid == os.getuid()  # the daemon, seen from the client
            reply = await ch.request(Status(1.0), timeout=5)
            assert reply == StatusReply([{"id": "n1", "uid": os.getuid()}])
            await ch.close()

    run(main())


def test_socket_is_private_to_its_owner(run: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")

    async def main() -> None:
        old = os.umask(0)  # even a permissive umask yields 0600
        try:
            server = await serve_local(path, registry=LOCAL, on_channel=answer_status)
        finally:
            os.umask(old)
        async with server:
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == 0o600

    run(main())


def test_stale_socket_file_is_replaced(run: Run, tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays behind, nobody listens

    async def main() -> None:
        server = await serve_local(path, registry=LOCAL, on_channel=answer_status)
        async with server:
            ch = await open_local(path, registry=LOCAL, timeout=5)
            assert isinstance(await ch.request(Status(1.0), timeout=5), StatusReply)
            await ch.close()

    run(main())


def test_a_regular_file_in_the_way_is_not_removed(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "d.sock"
    path.write_text("precious")

    async def main() -> None:
        with pytest.raises(FileExistsError, match="not a socket"):
            await serve_local(str(path), registry=LOCAL, on_channel=answer_status)

    run(main())
    assert path.read_text() == "precious"


def test_undecodable_local_message_closes_the_link(
    run: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bonjourgrid.control")
    path = str(tmp_path / "d.sock")

    async def main() -> None:
        server = await serve_local(path, registry=LOCAL, on_channel=answer_status)
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            junk = b"\x00\x63\x00\x00\x00\x02{}"  # kind 99
            good = LOCAL.encode(Status(1.0))
            for frame in (junk, good):
                writer.write(struct.pack(">I", len(frame)) + frame)
            await writer.drain()
            assert await reader.read() == b""  # closed, the good one unanswered
            writer.close()
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(struct.pack(">I", len(good)) + good)
            await writer.drain()
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            assert isinstance(LOCAL.decode(await reader.readexactly(length)), StatusReply)
            writer.close()

    run(main())
    assert "unknown local-test message kind 99" in caplog.text


def test_open_local_without_a_daemon_raises_oserror(run: Run, tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(OSError):
            await open_local(str(tmp_path / "none.sock"), registry=LOCAL, timeout=1)

    run(main())
