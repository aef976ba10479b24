"""The volunteer agent binds trust: a Reserve needs the app's CE-key proof (a re-homing too,
else the worker keeps its coordinator), leases are capped, and a RunTask that is not the
accepted spec's task exactly — or brings inputs that are not its predecessors' outputs — is
answered with a failed result and never runs."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from pathlib import Path

from bonjourgrid.app.bundle import pack_entries, sha256_hex
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.signing import TrustList, UserKey, sign_app
from bonjourgrid.config import Config
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.messages import (
    Release,
    Reserve,
    ReserveReply,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
)
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.volunteer_agent import VolunteerAgent

HOST = HostInfo("n1", "pc-1", 2, 2, 1024, "linux", "x86_64", ("embedded",))
SPEC: dict[str, object] = {
    "name": "x",
    "tasks": [
        {"id": "a", "command": "echo hi > a.txt", "outputs": ["a.txt"]},
        {"id": "b", "command": ["cat", "a.txt"], "after": ["a"]},
    ],
}
BUNDLE = pack_entries({})
CE = CEKey.generate()
ALICE = UserKey.generate("alice")


_CLOSED = object()


class Link:
    """A coordinator's end of a channel: messages pushed in, everything sent kept."""

    local_address = "127.0.0.1"
    peer_address = ("127.0.0.1", 7000)

    def __init__(self, peer: str) -> None:
        self.peer_node = peer
        self.sent: list[object] = []
        self.incoming: asyncio.Queue[object] = asyncio.Queue()

    async def send(self, msg: object) -> None:
        self.sent.append(msg)

    async def recv(self) -> object:
        msg = await self.incoming.get()
        if msg is _CLOSED:
            raise ChannelClosed("closed")
        return msg

    async def close(self) -> None:
        await self.incoming.put(_CLOSED)

    async def until(self, kind: type, timeout: float = 10.0) -> object:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            found = [m for m in self.sent if isinstance(m, kind)]
            if found:
                return found[-1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind.__name__} in {self.sent}")


def agent(tmp_path: Path, trusted: TrustList | None = None) -> VolunteerAgent:
    async def nothing() -> None:
        pass

    return VolunteerAgent(
        host=HOST,
        config=Config.fast(),
        work_dir=tmp_path / "work",
        reservation_log=tmp_path / "reservations.jsonl",
        execution_log=tmp_path / "executions.jsonl",
        on_state_change=nothing,
        trusted=trusted,
    )


def reserve(
    coordinator: str = "c1", term: int = 1, *, key: CEKey = CE, lease: float = 8.0, **kw: object
) -> Reserve:
    fields: dict[str, object] = {
        "bundle_sha256": sha256_hex(BUNDLE),
        "spec": SPEC,
        "ce_key": key.public.hex(),
        "proof": key.prove("app-1", term, coordinator, HOST.node_id),
    }
    fields.update(kw)
    return Reserve("app-1", coordinator, "coord", term, lease, "embedded", **fields)  # type: ignore[arg-type]


def run_task(task: str = "a", **kw: object) -> RunTask:
    fields: dict[str, object] = {
        "app": "app-1", "term": 1, "task": task, "attempt": 1,
        "argv": ("/bin/sh", "-c", "echo hi > a.txt"), "env": {}, "timeout": None, "cpus": 1,
        "outputs": ("a.txt",), "inputs": b"", "inputs_sha256": sha256_hex(b""),
    }  # fmt: skip
    fields.update(kw)
    return RunTask(**fields)  # type: ignore[arg-type]


def reservations(tmp_path: Path) -> list[dict[str, object]]:
    p = tmp_path / "reservations.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


async def _serving(a: VolunteerAgent, first: Reserve) -> tuple[Link, asyncio.Task[None]]:
    link = Link(first.coordinator)
    task = asyncio.create_task(a.serve(link, first))  # type: ignore[arg-type]
    reply = await link.until(ReserveReply)
    assert isinstance(reply, ReserveReply) and reply.accepted, reply
    await link.incoming.put(StageApp("app-1", first.term, sha256_hex(BUNDLE), BUNDLE))
    ack = await link.until(StageAck)
    assert isinstance(ack, StageAck) and ack.ok, ack
    return link, task


async def _release(link: Link, task: asyncio.Task[None], term: int = 1) -> None:
    await link.incoming.put(Release("app-1", term, "done"))
    await asyncio.wait_for(task, 10)


def test_a_reserve_without_a_valid_proof_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = agent(tmp_path)
        for bad in (
            reserve(proof=""),
            reserve(proof=CEKey.generate().prove("app-1", 1, "c1", HOST.node_id)),
            reserve(proof=CE.prove("app-1", 1, "c1", "another-volunteer")),
        ):
            link = Link("c1")
            await a.serve(link, bad)  # type: ignore[arg-type]
            (reply,) = link.sent
            assert isinstance(reply, ReserveReply) and not reply.accepted
            assert "proof of coordination" in reply.reason
            assert a.state == "idle"

    asyncio.run(scenario())


def test_a_signed_apps_proof_must_be_made_with_the_signed_ce_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = agent(tmp_path, TrustList.parse([ALICE.public.fingerprint]))
        sig = sign_app(ALICE, "app-1", sha256_hex(BUNDLE), SPEC, CE.public).encode()
        rogue_key = CEKey.generate()  # the Reserve names the rogue's key; the signature CE's
        link = Link("c1")
        await a.serve(link, reserve(key=rogue_key, signature=sig, user="alice"))  # type: ignore[arg-type]
        (reply,) = link.sent
        assert isinstance(reply, ReserveReply) and not reply.accepted, reply
        link, task = await _serving(a, reserve(signature=sig, user="alice"))
        await _release(link, task)

    asyncio.run(scenario())


def test_an_unproven_higher_term_keeps_the_worker_with_its_coordinator(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = agent(tmp_path)
        _link, task = await _serving(a, reserve())
        rogue = Link("rogue")
        mine = CEKey.generate()
        await a.serve(rogue, reserve("rogue", 5, key=mine))  # type: ignore[arg-type]
        (reply,) = rogue.sent
        assert isinstance(reply, ReserveReply) and not reply.accepted
        assert "re-homing" in reply.reason
        assert a.coordinator == "c1" and a.machine.highest_term("app-1") == 1
        assert any(r["event"] == "refused" and r["term"] == 5 for r in reservations(tmp_path))
        # a proven re-homing (an elected replica holding the CE key) is accepted
        replica = Link("r1")
        t2 = asyncio.create_task(a.serve(replica, reserve("r1", 2)))  # type: ignore[arg-type]
        reply = await replica.until(ReserveReply)
        assert isinstance(reply, ReserveReply) and reply.accepted, reply
        assert a.coordinator == "r1"
        await _release(replica, t2, term=2)
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


def test_a_huge_lease_is_clipped_to_max_lease(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = agent(tmp_path)
        link, task = await _serving(a, reserve(lease=1e9))
        assignment = a.machine.assignment
        assert assignment is not None
        left = assignment.lease_until - asyncio.get_running_loop().time()
        assert 0 < left <= Config.fast().max_lease + 1
        await _release(link, task)

    asyncio.run(scenario())


def test_a_runtask_unlike_the_spec_fails_and_never_runs(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = agent(tmp_path)
        link, task = await _serving(a, reserve())
        evil = run_task(argv=("/bin/sh", "-c", "cat ~/.config/bjgrid/grid.key"))
        await link.incoming.put(evil)
        result = await link.until(TaskResult)
        assert isinstance(result, TaskResult) and result.exit_code is None
        assert "refused by the volunteer" in result.error and "argv" in result.error
        await _release(link, task)

    asyncio.run(scenario())
    assert not (tmp_path / "executions.jsonl").exists()
    assert any(r["event"] == "refused-task" for r in reservations(tmp_path))


def test_inputs_that_are_not_predecessor_outputs_are_refused(tmp_path: Path) -> None:
    inputs = pack_entries(
        {"a.txt": (0o644, 2, io.BytesIO(b"hi")), "run.sh": (0o755, 3, io.BytesIO(b"rm "))}
    )

    async def scenario() -> None:
        a = agent(tmp_path)
        link, task = await _serving(a, reserve())
        msg = run_task(
            "b",
            argv=("cat", "a.txt"),
            outputs=(),
            inputs=inputs,
            inputs_sha256=sha256_hex(inputs),
        )
        await link.incoming.put(msg)
        result = await link.until(TaskResult)
        assert isinstance(result, TaskResult) and "run.sh" in result.error, result
        await _release(link, task)

    asyncio.run(scenario())
    assert not (tmp_path / "executions.jsonl").exists()


def test_a_runtask_of_a_higher_term_than_the_reservation_is_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        a = agent(tmp_path)
        link, task = await _serving(a, reserve())
        await link.incoming.put(dataclasses.replace(run_task(), term=9))
        await asyncio.sleep(0.2)
        assert not [m for m in link.sent if isinstance(m, TaskResult)]
        await _release(link, task)

    asyncio.run(scenario())
    assert not (tmp_path / "executions.jsonl").exists()
