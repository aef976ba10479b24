"""The embedded coordinator tells the worker each task's memory cap and network wish."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bonjourgrid.app import Requirements, TaskSpec
from bonjourgrid.ce_backends.base import WorkerHandle
from bonjourgrid.ce_backends.embedded.coordinator import EmbeddedCoordinator
from bonjourgrid.control.messages import RunTask
from bonjourgrid.states.tasktable import Attempt


class Recorder(WorkerHandle):
    node, host, slots = "n1", "h1", 1

    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send(self, msg: object) -> None:
        self.sent.append(msg)

    async def expect(self, kind: type, timeout: float) -> object:
        raise AssertionError("not expected")


def launched(req: Requirements) -> RunTask:
    app = SimpleNamespace(app_id="a1", term=2)
    backend = EmbeddedCoordinator(app)  # type: ignore[arg-type]
    worker = Recorder()
    task = TaskSpec(id="t", command="true", requirements=req)
    asyncio.run(backend.launch(task, Attempt("t", 1, "n1"), worker, b""))
    (msg,) = worker.sent
    assert isinstance(msg, RunTask)
    return msg


def test_a_tasks_memory_and_network_requirements_reach_the_worker() -> None:
    msg = launched(Requirements(memory_mb=64, network=True))
    assert (msg.memory_mb, msg.network) == (64, True)


def test_by_default_a_task_gets_the_default_cap_and_no_network() -> None:
    msg = launched(Requirements())
    assert (msg.memory_mb, msg.network) == (0, False)
