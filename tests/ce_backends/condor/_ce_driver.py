"""Drive a condor CE on a virtual LAN: run on the coordinator's host (its network namespace,
hostname and /etc/hosts), with the CondorWorkers' startds spawned on the other hosts.

Plays the coordinator core's part with the core's own pieces (TaskTable, ResultStore): ready
tasks are launched with ``worker=None``, results come back through ``on_result`` and are
committed; successors become ready only then. The first wave is launched before any worker
has joined; each worker is prepared as the core does it (StageApp/StageAck, then
CondorJoin/CondorJoined), every message through the control codec.

stdin: one JSON request (see test_ce_lan.py); stdout: one JSON report.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bonjourgrid.app.bundle import build_bundle, sha256_hex, unpack_files
from bonjourgrid.app.load import parse_app
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import WorkerHandle
from bonjourgrid.ce_backends.condor.coordinator import CondorCoordinator
from bonjourgrid.ce_backends.condor.installation import require
from bonjourgrid.ce_backends.condor.worker import CondorWorker
from bonjourgrid.control.messages import CONTROL, StageAck, StageApp, TaskResult
from bonjourgrid.coordinator.result_store import ResultStore
from bonjourgrid.states.tasktable import TaskTable
from bonjourgrid.testbed.vlan import Host

RESULT_TIMEOUT_S = 40.0


class Handle(WorkerHandle):
    """A worker as the core sees it: messages go through the control codec, like on the wire,
    and the worker side answers as the volunteer agent does (StageApp -> stage -> StageAck;
    CondorJoin -> the backend's ``handle``)."""

    def __init__(self, node: str, host: str, worker: CondorWorker) -> None:
        self.node, self.host, self.slots = node, host, worker.cpus
        self.worker = worker
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()
        self.staged = False

    async def send(self, msg: object) -> None:
        received = CONTROL.decode(CONTROL.encode(msg))
        reply: object
        if isinstance(received, StageApp):
            await self.worker.stage(received.bundle, received.sha256)
            self.staged = True
            reply = StageAck(received.app, received.sha256, True, "")
        else:
            assert self.staged, "CondorJoin before the app was staged"
            assert isinstance(received, self.worker.handles), received
            reply = await self.worker.handle(received)
        await self.replies.put(CONTROL.encode(reply))

    async def expect(self, kind: type, timeout: float) -> object:
        msg = CONTROL.decode(await asyncio.wait_for(self.replies.get(), timeout))
        assert isinstance(msg, kind)
        return msg


def app_spec(app_dir: Path) -> AppSpec:
    (app_dir / "data.txt").write_text("hello condor\n")
    tool = app_dir / "tool.sh"
    tool.write_text('#!/bin/sh\ntr a-z A-Z < "$1"\n')
    tool.chmod(0o755)
    parts = [
        {
            "id": f"part{i}",
            "command": f"mkdir -p parts && ./tool.sh data.txt > parts/p{i}.txt && "
            f'echo "$PART" >> parts/p{i}.txt && echo "part {i} on $(hostname)"',
            "env": {"PART": f"piece {i}"},
            "outputs": [f"parts/p{i}.txt"],
        }
        for i in range(1, 5)
    ]
    data = {
        "version": 1,
        "name": "condor-lan",
        "files": ["data.txt", "tool.sh"],
        "tasks": [
            *parts,
            {
                "id": "fanin",
                "after": [p["id"] for p in parts],
                "command": "cat parts/p1.txt parts/p2.txt parts/p3.txt parts/p4.txt > all.txt",
                "outputs": ["all.txt"],
            },
            {"id": "fails", "command": "echo oops >&2; exit 3", "retries": 0},
        ],
    }
    return parse_app(data, app_dir=app_dir, source="test")


async def run(req: dict[str, Any]) -> dict[str, Any]:
    base = Path(str(req["base"]))
    # What Host needs of its LAN (the LAN itself lives in the test process).
    lan: Any = SimpleNamespace(**{**req["lan"], "hosts_file": Path(req["lan"]["hosts_file"])})
    hosts = [Host(lan, int(w["index"]), str(w["address"]), base / f"home-{w['index']}")
             for w in req["workers"]]  # fmt: skip
    app_dir = base / "app"
    app_dir.mkdir(parents=True)
    spec = app_spec(app_dir)
    bundle = build_bundle(spec, app_dir)
    app = SimpleNamespace(
        app_id="condorlan", term=1, spec=spec, bundle=bundle, bundle_sha=sha256_hex(bundle)
    )
    table = TaskTable(spec.tasks)
    store = ResultStore(base / "store")
    got: asyncio.Queue[TaskResult] = asyncio.Queue()

    async def on_result(r: TaskResult) -> None:
        await got.put(r)

    t0 = time.monotonic()
    inst = require()
    ce = CondorCoordinator(
        app, address=str(req["address"]), root=base / "ce", on_result=on_result, inst=inst
    )
    workers = [
        CondorWorker(app.app_id, base / f"w-{h.name}", address=h.address, cpus=1, spawn=h.popen)
        for h in hosts
    ]
    report: dict[str, Any] = {"events": [], "machines": []}
    events: list[list[object]] = report["events"]
    try:
        await ce.start()
        report["head_s"] = time.monotonic() - t0
        t_run = time.monotonic()

        async def launch_ready() -> None:
            for tid in table.ready():
                attempt = table.start(tid, "condor", time.monotonic())
                task = spec.task(tid)
                inputs = store.inputs_for(task, spec)
                events.append(["launch", tid, time.monotonic() - t_run])
                await ce.launch(task, attempt, None, inputs)

        # As the core may: every ready task is queued before any worker has joined.
        await launch_ready()
        handles = [Handle(f"node-{h.name}", h.name, w) for h, w in zip(hosts, workers, strict=True)]
        await asyncio.gather(*(ce.prepare(h) for h in handles))
        report["members"] = dict(ce.members)
        report["staged"] = all(h.staged for h in handles)
        want = sorted(ce.members.values())
        while await ce.machines() != want and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.2)
        report["pool_s"] = time.monotonic() - t0
        while not table.finished():
            await launch_ready()
            r = await asyncio.wait_for(got.get(), RESULT_TIMEOUT_S)
            events.append(["result", r.task, time.monotonic() - t_run, r.exit_code, r.error])
            report["machines"].append(await ce.machines())
            store.stage(r.task, r.attempt, r.outputs)
            store.promote(r.task, r.attempt)
            assert r.exit_code is not None, r
            table.finish(r.task, r.attempt, exit_code=r.exit_code, now=0, seconds=r.seconds)
        report["run_s"] = time.monotonic() - t_run
        report["ran_on"] = {f"{t}#{a}": n for (t, a), n in ce.ran_on.items()}
        report["states"] = {r.id: r.state.value for r in table.records()}
        report["files"] = {
            str(p.relative_to(store.tasks)): p.read_text()
            for p in sorted(store.tasks.rglob("*"))
            if p.is_file()
        }
        unpack_files(store.export(), base / "export")  # the committed layout is a valid tar
    finally:
        t_stop = time.monotonic()
        await ce.stop()
        for w in workers:
            await w.close()
        report["stop_s"] = time.monotonic() - t_stop
    report["left"] = [str(p) for p in [base / "ce", *(w.root for w in workers)] if p.exists()]
    return report


def main() -> None:
    req = json.load(sys.stdin)
    print(json.dumps(asyncio.run(run(req))))


if __name__ == "__main__":
    main()
