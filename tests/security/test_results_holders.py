"""`bjgrid results` does not believe the highest claimed term (issue 12, item 5).

Real authenticated control channels on loopback: a rogue grid-key holder claims the highest
term with a complete copy of alice's app and answers FetchApp with results of its own; the
honest holder (a lower term) answers with the real ones. ``app_directory.collect`` — what the
asking daemon runs for ``bjgrid results`` — asks the rogue first (its claim is best) and still
takes the honest answer: the rogue's manifest is not signed by the app's CE key, or does not
match its own tar.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bonjourgrid.app.bundle import pack_files
from bonjourgrid.control.channel import Channel, serve
from bonjourgrid.control.messages import AppResults, AppState, Error, FetchApp
from bonjourgrid.control.nodekey import NodeKey
from bonjourgrid.coordinator import manifest
from bonjourgrid.coordinator.peers import Identity, Peer
from bonjourgrid.daemon.app_directory import collect
from bonjourgrid.gridkey import GridKey

APP = "a1b2c3d4"
RESULTS = {
    "app": APP,
    "name": "alices",
    "tasks": [{"id": "answer", "state": "done", "exit_code": 0, "attempts": 1}],
}


def _ce() -> tuple[bytes, bytes]:
    seed = os.urandom(32)
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return seed, pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _outputs(root: Path, answer: bytes) -> bytes:
    (root / "answer").mkdir(parents=True)
    (root / "answer" / "out.txt").write_bytes(answer)
    return pack_files(root, ["answer"])


def _answer(outputs: bytes, term: int, *, seed: bytes | None, tamper: bool = False) -> AppResults:
    doc = manifest.make_manifest(
        APP,
        term,
        complete=True,
        outcome="finished",
        results=RESULTS,
        files=manifest.digests(outputs),
    )
    if tamper:  # the manifest of other outputs than the tar it comes with
        m = json.loads(doc)
        m["tasks"]["answer"]["files"]["out.txt"] = "0" * 64
        doc = json.dumps(m, sort_keys=True, separators=(",", ":"))
    return AppResults(
        app=APP,
        name="alices",
        term=term,
        complete=True,
        outcome="finished",
        results=RESULTS,
        outputs=outputs,
        manifest=doc,
        manifest_signature=manifest.sign_manifest(seed, doc) if seed else "",
    )


async def _holder(key: GridKey, reply: AppResults) -> tuple[asyncio.Server, Peer]:
    node = NodeKey.generate()

    async def on_channel(ch: Channel) -> None:
        msg = await ch.recv()
        await ch.send(reply if isinstance(msg, FetchApp) else Error("no"))

    server = await serve("127.0.0.1", 0, key=key, node=node, on_channel=on_channel)
    port = server.sockets[0].getsockname()[1]
    return server, Peer(node.node_id, ("127.0.0.1",), port, reply.term)


def _run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 30))


def _me(key: GridKey) -> Identity:
    node = NodeKey.generate()
    return Identity(node.node_id, "asker", key, node)


def _state(peer: Peer) -> AppState:
    return AppState(APP, peer.term, "coordinating", True, True)


def test_a_rogue_claiming_the_highest_term_loses_to_the_ce_signed_answer(tmp_path: Path) -> None:
    seed, ce_public = _ce()
    rogue_seed, _ = _ce()
    real = _outputs(tmp_path / "real", b"42\n")
    forged = _outputs(tmp_path / "forged", b"41\n")

    async def go() -> None:
        key = GridKey.generate()
        me = _me(key)
        rogue, rogue_peer = await _holder(key, _answer(forged, 99, seed=rogue_seed))
        unsigned, unsigned_peer = await _holder(key, _answer(forged, 98, seed=None))
        honest, honest_peer = await _holder(key, _answer(real, 2, seed=seed))
        try:
            found = [(p, _state(p)) for p in (rogue_peer, unsigned_peer, honest_peer)]
            got = await collect(APP, found, me, 10.0, "", ce_public)
        finally:
            for s in (rogue, unsigned, honest):
                s.close()
        assert got.holder == honest_peer.node
        assert got.best is not None and got.best.term == 2
        assert got.best.outputs == real
        assert len(got.refusals) == 2, got.refusals
        assert all("CE key" in r for r in got.refusals), got.refusals

    _run(go)


def test_an_answer_that_does_not_match_its_manifest_is_passed_over(tmp_path: Path) -> None:
    real = _outputs(tmp_path / "real", b"42\n")
    forged = _outputs(tmp_path / "forged", b"41\n")

    async def go() -> None:
        key = GridKey.generate()
        me = _me(key)
        rogue, rogue_peer = await _holder(key, _answer(forged, 99, seed=None, tamper=True))
        honest, honest_peer = await _holder(key, _answer(real, 2, seed=None))
        try:
            found = [(p, _state(p)) for p in (rogue_peer, honest_peer)]
            got = await collect(APP, found, me, 10.0, "")  # asker without the app's signature
        finally:
            rogue.close()
            honest.close()
        assert got.holder == honest_peer.node and got.best is not None
        assert got.best.outputs == real
        assert got.refusals and "does not hash to its manifest entry" in got.refusals[0]

    _run(go)


def test_refusals_are_reported_when_no_holder_answers(tmp_path: Path) -> None:
    _, ce_public = _ce()
    forged = _outputs(tmp_path / "forged", b"41\n")

    async def go() -> None:
        key = GridKey.generate()
        me = _me(key)
        rogue, rogue_peer = await _holder(key, _answer(forged, 99, seed=None))
        try:
            got = await collect(APP, [(rogue_peer, _state(rogue_peer))], me, 10.0, "", ce_public)
        finally:
            rogue.close()
        assert got.best is None
        assert got.refusals == [f"{rogue_peer.node}: " + "the result manifest is not signed "
                                "by the app's CE key"]  # fmt: skip

    _run(go)
