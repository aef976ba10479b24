"""A rogue node holding the grid key, written with the project's own code (control.auth,
control.channel, control.messages, discovery). Run inside a virtual-LAN host:

``python rogue_node.py impersonate KEY_FILE VICTIM_ADDR PORT TARGET_ADDR PORT``
    learn the victim's node id and public key from its handshake, then try to open a channel
    to the target as the victim: claiming its id with our own key, and showing its public key
    while signing with ours. Prints one JSON line per try: what the target answered.
``python rogue_node.py worker KEY_FILE PORT LOG``
    advertise as an idle volunteer (mDNS); when a coordinator reserves us, accept, stage,
    answer heartbeats, run nothing, and keep sending forged successful TaskResults (output
    ``out.txt`` = FORGED) for every task of the app we were not given, attempts 1-3. One JSON
    line per event goes to LOG.
``python rogue_node.py old KEY_FILE PORT``
    advertise as an idle volunteer and answer every handshake as bjgrid of control protocol 1
    does: a refusal of our version.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import socket
import sys
import tarfile
from pathlib import Path

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.control import auth
from bonjourgrid.control.channel import Channel, serve
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.framing import FrameReader, write_frame
from bonjourgrid.control.messages import (
    Heartbeat,
    HeartbeatAck,
    Ping,
    Pong,
    Reserve,
    ReserveReply,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
)
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.discovery import Discovery, NodeTxt
from bonjourgrid.gridkey import GridKey, load_key

FORGED = b"FORGED by the rogue 7c1e\n"
ME = NodeKey.generate()


class Borrowed:
    """Shows another node's id and public key; can only sign with our own key."""

    def __init__(self, node_id: str, public: bytes) -> None:
        self.node_id, self.public, self.sign = node_id, public, ME.sign


async def _exchange(addr: str, port: int, hs: auth.ClientHandshake) -> tuple[str, object]:
    """Run a client handshake by hand; ('welcome', peer) or ('refused', reason text)."""
    reader, writer = await asyncio.open_connection(addr, port)
    frames = FrameReader(reader, max_size=auth.MAX_HANDSHAKE_FRAME)
    try:
        write_frame(writer, hs.hello())
        await writer.drain()
        first = await asyncio.wait_for(frames.read(), 10)
        if first.startswith(b"BJGX"):
            return "refused", first[4:].decode(errors="replace")
        write_frame(writer, hs.on_server_hello(first))
        await writer.drain()
        try:
            second = await asyncio.wait_for(frames.read(), 10)
        except (EOFError, ConnectionError):
            return "refused", "closed without a word"
        if second.startswith(b"BJGX"):
            return "refused", second[4:].decode(errors="replace")
        hs.on_welcome(second)
        return "welcome", hs.peer
    finally:
        writer.transport.abort()


async def impersonate(key: GridKey, victim: tuple[str, int], target: tuple[str, int]) -> None:
    probe = auth.ClientHandshake(key, ME, secrets.token_bytes(32))
    outcome, peer = await _exchange(*victim, probe)
    assert outcome == "welcome" and isinstance(peer, auth.Hello), (outcome, peer)
    print(json.dumps({"try": "learn", "victim": peer.node_id}), flush=True)
    # 1. the victim's id, our own key (the fingerprint gives us away)
    own = auth.ClientHandshake(key, ME, secrets.token_bytes(32))
    hello = own.hello().replace(ME.node_id.encode(), peer.node_id.encode())

    class Forged(auth.ClientHandshake):
        def hello(self) -> bytes:
            return hello

    out1 = await _exchange(*target, Forged(key, ME, secrets.token_bytes(32)))
    print(json.dumps({"try": "own key", "outcome": out1[0], "said": str(out1[1])}), flush=True)
    # 2. the victim's id and public key, our signature
    borrowed = auth.ClientHandshake(
        key,
        Borrowed(peer.node_id, peer.node_public),  # type: ignore[arg-type]
        secrets.token_bytes(32),
    )
    out2 = await _exchange(*target, borrowed)
    print(json.dumps({"try": "borrowed key", "outcome": out2[0], "said": str(out2[1])}), flush=True)


def _forged_outputs() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("out.txt", FORGED), ("stdout", FORGED), ("stderr", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def advertise(key: GridKey, port: int) -> Discovery:
    d = Discovery(grid_id=key.grid_id, node_id=ME.node_id, hostname=socket.gethostname(), port=port)
    await d.start()
    await d.set_volunteer(
        NodeTxt(
            grid=key.grid_id,
            node=ME.node_id,
            host="rogue",
            cpus=1,
            slots=1,
            mem_mb=4096,
            os="linux",
            arch=os.uname().machine,
            backends=("embedded",),
            isolation="root",
        )
    )
    return d


async def worker(key: GridKey, port: int, log_path: Path) -> None:
    log = log_path.open("a", buffering=1)

    def say(**event: object) -> None:
        log.write(json.dumps(event) + "\n")

    def pong() -> Pong:
        return Pong(ME.node_id, "rogue", "idle", None, None, 1, 1, 1, (), ("embedded",))

    async def forge_forever(ch: Channel, first: Reserve, given: set[tuple[str, int]]) -> None:
        outputs = _forged_outputs()
        tasks = [str(t["id"]) for t in first.spec.get("tasks", [])]  # type: ignore[union-attr]
        while True:
            for task in tasks:
                for attempt in (1, 2, 3):
                    if (task, attempt) in given:
                        continue
                    r = TaskResult(
                        first.app, task, attempt, 0, 0.1, "", outputs, sha256_hex(outputs)
                    )
                    await ch.send(r)
                    say(event="forged", task=task, attempt=attempt)
            await asyncio.sleep(0.3)

    async def on_channel(ch: Channel) -> None:
        first = await ch.recv()
        if isinstance(first, Ping):
            await ch.send(pong())
            return
        if not isinstance(first, Reserve):
            return
        say(event="reserved", app=first.app, coordinator=first.coordinator)
        await ch.send(ReserveReply(first.app, True, "", 1))
        given: set[tuple[str, int]] = set()
        forger: asyncio.Task[None] | None = None
        try:
            while True:
                msg = await ch.recv()
                if isinstance(msg, StageApp):
                    await ch.send(StageAck(msg.app, msg.sha256, True, ""))
                    forger = forger or asyncio.create_task(forge_forever(ch, first, given))
                elif isinstance(msg, Heartbeat):
                    await ch.send(HeartbeatAck(msg.app, msg.term, ()))
                elif isinstance(msg, RunTask):
                    given.add((msg.task, msg.attempt))
                    say(event="given", task=msg.task, attempt=msg.attempt)
        except ChannelClosed as e:
            say(event="closed", why=str(e))
        finally:
            if forger is not None:
                forger.cancel()

    server = await serve("0.0.0.0", port, key=key, node=ME, on_channel=on_channel)
    d = await advertise(key, port)
    say(event="up", node=ME.node_id)
    try:
        await asyncio.Event().wait()
    finally:
        await d.close()
        server.close()


async def old(key: GridKey, port: int) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await FrameReader(reader, max_size=auth.MAX_HANDSHAKE_FRAME).read()
            # Word for word what bjgrid of control protocol 1 answers a newer hello.
            text = f"peer speaks protocol version {auth.PROTOCOL_VERSION}, we speak 1"
            write_frame(writer, auth.refusal(text))
            await writer.drain()
        except Exception:
            pass
        writer.transport.abort()

    server = await asyncio.start_server(answer, "0.0.0.0", port)
    d = await advertise(key, port)
    print(json.dumps({"up": ME.node_id}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await d.close()
        server.close()


if __name__ == "__main__":
    mode, grid_key = sys.argv[1], load_key(Path(sys.argv[2]))
    if mode == "impersonate":
        victim_addr = (sys.argv[3], int(sys.argv[4]))
        asyncio.run(impersonate(grid_key, victim_addr, (sys.argv[5], int(sys.argv[6]))))
    elif mode == "worker":
        asyncio.run(worker(grid_key, int(sys.argv[3]), Path(sys.argv[4])))
    else:
        asyncio.run(old(grid_key, int(sys.argv[3])))
