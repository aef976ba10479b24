"""The embedded task farm, coordinator side: stage the app on each worker, send it tasks.

The coordinator core places tasks (``places_tasks = False``); this backend only speaks the
control-channel messages that carry files and tasks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bonjourgrid.app.argv import task_argv
from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.ce_backends.base import CoordinatorBackend, WorkerHandle
from bonjourgrid.ce_backends.staging import stage_app
from bonjourgrid.control.messages import CancelTask, RunTask

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.ce_backends.registry import AppView
    from bonjourgrid.states.tasktable import Attempt


class EmbeddedCoordinator(CoordinatorBackend):
    name = "embedded"
    places_tasks = False

    def __init__(self, app: AppView) -> None:
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


__all__ = ["EmbeddedCoordinator"]
