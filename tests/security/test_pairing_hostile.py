"""A hostile peer against `bjgrid invite`'s server (real asyncio TCP on loopback): bad
frames, oversize, slowloris, replay of another session's frames, wrong codes, the guess
budget. None of them gets the key; the invitation stays usable or closes as it should."""

from __future__ import annotations

import asyncio
import time

from bonjourgrid.pairing.code import Code
from bonjourgrid.pairing.frames import HEADER, Frame, Kind, encode
from bonjourgrid.pairing.net import InviteServer, join_at, read_frame
from bonjourgrid.pairing.session import Invitation, JoinerSession, PairingError

SECRET = bytes(range(32))
CODE = Code(7, ("guitar", "otter", "maple"))
WRONG = Code(7, ("guitar", "otter", "melon"))


async def _server(max_wrong: int = 3, expires: float = 60.0, **kw: float) -> InviteServer:
    inv = Invitation(CODE, expires_at=time.monotonic() + expires, max_wrong=max_wrong)
    server = InviteServer(inv, SECRET, **kw)
    await server.start("127.0.0.1")
    return server


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    got = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    return got


def test_bad_and_oversize_frames_are_dropped_and_the_code_still_works() -> None:
    async def main() -> None:
        s = await _server()
        for junk in (b"\x09\x00\x01x", b"\x01\xff\xff" + b"A" * 1000, b"\x01\x00\x22" + b"\0" * 34):
            got = await _raw(s.port, junk)
            assert b"grid" not in got and len(got) < 200
        assert s.invitation.wrong == 0 and s.invitation.open
        assert await join_at("127.0.0.1", s.port, CODE) == SECRET
        await s.close()

    asyncio.run(main())


def test_slowloris_is_cut_off_by_the_read_timeout() -> None:
    async def main() -> None:
        s = await _server(read_timeout=0.5, session_timeout=2.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(b"\x01")  # a third of a header, then nothing
        await writer.drain()
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert time.monotonic() - t0 < 8
        assert s.invitation.open and s.invitation.wrong == 0
        await s.close()

    asyncio.run(main())


def test_a_wrong_code_gets_no_key_and_the_budget_closes_the_invitation() -> None:
    async def main() -> None:
        s = await _server(max_wrong=3)
        for _ in range(3):
            try:
                await join_at("127.0.0.1", s.port, WRONG)
                raise AssertionError("a wrong code was accepted")
            except PairingError as e:
                assert e.wrong_code
        assert await s.wait() == "closed after too many wrong codes"
        try:  # now even the right code is refused
            await join_at("127.0.0.1", s.port, CODE)
            raise AssertionError("a closed invitation paired")
        except PairingError as e:
            assert "closed" in str(e) and not e.wrong_code
        await s.close()

    asyncio.run(main())


def test_a_replay_of_a_previous_session_gets_nothing() -> None:
    async def main() -> None:
        s = await _server()
        # Record a legitimate session's joiner frames on the wire.
        j = JoinerSession(CODE)
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        hello = j.start()
        writer.write(encode(hello))
        reply = await read_frame(reader, 5)
        confirm = j.receive(reply)[0]
        writer.close()  # (the recorded session ends before its CONFIRM)
        await asyncio.sleep(0.1)
        got = await _raw(s.port, encode(hello) + encode(confirm))
        kinds = []
        while got:
            kinds.append(got[0])
            got = got[HEADER.size + HEADER.unpack(got[: HEADER.size])[1] :]
        assert Kind.KEY not in kinds and Kind.FAIL in kinds
        assert s.invitation.wrong == 1  # the replayed confirmation was a (wrong) guess
        await s.close()

    asyncio.run(main())


def test_a_used_or_expired_code_fails() -> None:
    async def main() -> None:
        s = await _server()
        assert await join_at("127.0.0.1", s.port, CODE) == SECRET
        assert await s.wait() == "used"
        try:
            await join_at("127.0.0.1", s.port, CODE)
            raise AssertionError("a used code paired twice")
        except PairingError as e:
            assert "used" in str(e)
        await s.close()
        e2 = await _server(expires=0.3)
        assert await e2.wait() == "expired"
        try:
            await join_at("127.0.0.1", e2.port, CODE)
            raise AssertionError("an expired code paired")
        except PairingError as e:
            assert "expired" in str(e)
        await e2.close()

    asyncio.run(main())


def test_a_hostile_inviter_cannot_feed_the_joiner_a_key() -> None:
    async def main() -> None:
        async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_frame(reader, 5)
            writer.write(encode(Frame(Kind.REPLY, b"B" + bytes(32))))
            writer.write(encode(Frame(Kind.KEY, bytes(92))))
            await writer.drain()
            await asyncio.sleep(1)
            writer.close()

        srv = await asyncio.start_server(fake, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            await join_at("127.0.0.1", port, CODE, read_timeout=3)
            raise AssertionError("accepted a key from an impostor")
        except PairingError:
            pass
        srv.close()

    asyncio.run(main())
