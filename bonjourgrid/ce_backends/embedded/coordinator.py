"""The embedded task farm, coordinator side: stage the app on each worker, send it tasks.

The coordinator core places tasks (``places_tasks = False``); this backend only speaks the
control-channel messages that carry files and tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.ce_backends.base import CoordinatorBackend, WorkerHandle
from bonjourgrid.control.messages import CancelTask, RunTask, StageAck, StageApp

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.ce_backends.registry import AppView
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.states.tasktable import Attempt

STAGE_TIMEOUT_BASE = 30.0
"""Seconds to stage an app bundle, plus one per MiB (a 100 Mbit/s LAN moves ~10 MiB/s)."""


def task_argv(task: TaskSpec) -> tuple[str, ...]:
    """An argv list runs as is; a string command runs under ``/bin/sh -c``."""
    if isinstance(task.command, str):
        return ("/bin/sh", "-c", task.command)
    return tuple(task.command)


async def stage_app(app: AppView, worker: WorkerHandle) -> None:
    """Send the app's bundle to a recruit and wait for its ack: the volunteer checks it against
    the signed checksum and turns Worker. Every backend stages first (HTCondor and BOINC
    workers keep nothing: their middleware moves each job's files). Raises if refused."""
    await worker.send(StageApp(app.app_id, app.term, app.bundle_sha, app.bundle))
    ack = await worker.expect(StageAck, STAGE_TIMEOUT_BASE + len(app.bundle) / 2**20)
    assert isinstance(ack, StageAck)
    if not ack.ok:
        raise RuntimeError(f"staging refused: {ack.error}")


class EmbeddedCoordinator(CoordinatorBackend):
    name = "embedded"
    places_tasks = False

    def __init__(self, app: AppCoordinator) -> None:
        self.app = app

    async def start(self) -> None:
        pass

    async def prepare(self, worker: WorkerHandle) -> None:
        await stage_app(self.app, worker)

    async def launch(
        self, task: TaskSpec, attempt: Attempt, worker: WorkerHandle | None, inputs: bytes
    ) -> None:
        assert worker is not None
        await worker.send(
            RunTask(
                app=self.app.app_id,
                term=self.app.term,
                task=task.id,
                attempt=attempt.attempt,
                argv=task_argv(task),
                env=task.env_dict(),
                timeout=task.timeout,
                cpus=task.requirements.cpus,
                outputs=task.outputs,
                inputs=inputs,
                inputs_sha256=sha256_hex(inputs),
                memory_mb=task.requirements.memory_mb,
                network=task.requirements.network,
            )
        )

    async def cancel(self, attempt: Attempt, worker: WorkerHandle | None) -> None:
        if worker is not None:
            await worker.send(CancelTask(self.app.app_id, attempt.task, attempt.attempt))

    async def stop(self) -> None:
        pass


__all__ = ["EmbeddedCoordinator", "stage_app", "task_argv"]
