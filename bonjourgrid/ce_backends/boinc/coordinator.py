"""The BOINC CE, coordinator side: one app's BOINC project, served for the app's whole life.

::

    start()            code-signing key (ctx.saved, or a new one); Project on ctx.address:0
    prepare(worker) ── account for worker.node, BoincAttach(master URL, authenticator) ─►
                    ◄─ BoincAttached(ok)                  the volunteer's client attaches
    launch(task, attempt, None, inputs)
                       one BOINC result (its job file: command, env, outputs, inputs)
    clients            fetch work, run it under the signed wrapper, upload, report
    project thread     each report -> Finished -> (event loop) TaskResult -> ctx.on_result
    worker_lost(node)  that volunteer's results go back to the queue (same attempt)
    cancel(attempt)    dropped if waiting, aborted on its client's next RPC
    stop()             stop serving, remove ctx.root

BOINC places the tasks (``places_tasks``): the core launches every ready task with
``worker=None``. Retries stay with the core (each job has ``retries=0``): a result the client
reports as failed, including a refused signature, becomes a failed attempt with the client's
reason in ``error`` and stderr. A *lost* result (its volunteer was lost, or it missed its
deadline) is issued again as the same attempt, up to ``BoincTimings.lost_reissues`` times,
and the core never hears of it: losing a machine does not use a task's retries.

Threading: the project runs in its own thread; results cross to the event loop with
``call_soon_threadsafe`` and are delivered from one task, in order; a result whose
``on_result`` raises is kept and delivered again ``REDELIVER_S`` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.ce_backends.base import CoordinatorBackend, WorkerHandle
from bonjourgrid.ce_backends.boinc.issuer import IssuerConfig
from bonjourgrid.ce_backends.boinc.project import Finished, Project, ProjectConfig
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey
from bonjourgrid.ce_backends.boinc.timing import BoincTimings
from bonjourgrid.ce_backends.staging import stage_app
from bonjourgrid.control.messages import BoincAttach, BoincAttached, TaskResult

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.ce_backends.registry import CoordinatorContext
    from bonjourgrid.states.tasktable import Attempt

log = logging.getLogger(__name__)

SAVED_KEY = "code_sign_key"
"""``saved_state()`` entry: the app's code-signing key (PKCS#8 PEM)."""
REDELIVER_S = 1.0
"""A result the core did not take (on_result raised) is offered again after this long."""


class BoincCoordinator(CoordinatorBackend):
    """One app's BOINC project on the coordinator; the volunteers' clients place the tasks.

    ``listen_socket``: makes the (unbound) TCP socket to serve on, e.g. in a test LAN host's
    network namespace; default: a plain socket of this process.
    """

    name = "boinc"
    places_tasks = True

    def __init__(
        self,
        ctx: CoordinatorContext,
        *,
        timings: BoincTimings | None = None,
        listen_socket: Callable[[], socket.socket] | None = None,
    ) -> None:
        self.ctx = ctx
        self.timings = timings or BoincTimings.from_env()
        self.project: Project | None = None
        self.key: CodeSignKey | None = None
        self._listen_socket = listen_socket
        self._loop: asyncio.AbstractEventLoop | None = None
        self._undelivered: deque[Finished] = deque()
        self._wake = asyncio.Event()
        self._deliverer: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def master_url(self) -> str:
        if self.project is None:
            raise RuntimeError("the project is not served")
        return self.project.master_url

    # --- CoordinatorBackend ----------------------------------------------------------------

    async def start(self) -> None:
        if self.project is not None:
            return
        if self._stopped:
            raise RuntimeError("this BOINC CE was stopped")
        self._loop = asyncio.get_running_loop()
        self.project = await asyncio.to_thread(self._serve)
        self._deliverer = asyncio.create_task(
            self._deliver_loop(), name=f"boinc results {self.ctx.app.app_id}"
        )
        log.info("app %s: BOINC project at %s", self.ctx.app.app_id, self.project.master_url)

    def _serve(self) -> Project:
        saved = self.ctx.saved.get(SAVED_KEY)
        key = self.key = CodeSignKey.from_json(saved) if saved else CodeSignKey.generate()
        t = self.timings
        config = ProjectConfig(
            next_rpc_delay=t.next_rpc_delay,
            poll=t.poll,
            issuer=IssuerConfig(
                deadline=t.deadline,
                grace=t.grace,
                queue_per_cpu=t.queue_per_cpu,
                lost_reissues=t.lost_reissues,
            ),
        )
        self.ctx.root.mkdir(parents=True, exist_ok=True)
        project = Project(
            app_id=self.ctx.app.app_id,
            key=key,
            bundle=self.ctx.app.bundle,
            root=self.ctx.root / "project",
            on_result=self._from_project,
            address=self.ctx.address,
            port=0,
            listen_socket=self._listen_socket() if self._listen_socket else None,
            config=config,
        )
        return project.start()

    def saved_state(self) -> dict[str, str]:
        return {} if self.key is None else {SAVED_KEY: self.key.to_json()}

    async def prepare(self, worker: WorkerHandle) -> None:
        project = self.project
        if project is None or self._stopped:
            raise RuntimeError("the BOINC project is not served")
        app = self.ctx.app
        await stage_app(app, worker)  # the volunteer checks the bundle and turns Worker
        await worker.send(
            BoincAttach(
                app=app.app_id,
                term=app.term,
                master_url=project.master_url,
                authenticator=project.add_account(worker.node),
                project_name=f"bjgrid {app.app_id}",
            )
        )
        reply = await worker.expect(BoincAttached, self.timings.attach_timeout)
        assert isinstance(reply, BoincAttached)
        if not reply.ok:
            raise RuntimeError(f"{worker.host}: BOINC client did not attach: {reply.error}")
        log.info("app %s: %s's BOINC client attached (%s)", app.app_id, worker.host, reply.client)

    async def launch(
        self, task: TaskSpec, attempt: Attempt, worker: WorkerHandle | None, inputs: bytes
    ) -> None:
        project = self.project
        if project is None or self._stopped:
            raise RuntimeError("the BOINC project is not served")
        await asyncio.to_thread(
            project.submit,
            task=task.id,
            attempt=attempt.attempt,
            command=task.command,
            env=task.env_dict(),
            outputs=task.outputs,
            timeout=task.timeout,
            inputs=inputs,
            cpus=task.requirements.cpus,
            memory_mb=task.requirements.memory_mb,
            retries=0,
        )

    async def cancel(self, attempt: Attempt, worker: WorkerHandle | None) -> None:
        if self.project is not None:
            self.project.cancel(attempt.task, attempt.attempt)

    def worker_lost(self, node: str) -> None:
        if self.project is not None and not self._stopped:
            self.project.host_lost(node)

    def running(self) -> list[tuple[str, int]]:
        return [] if self.project is None else self.project.attempts()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._deliverer is not None:
            self._deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deliverer
        project, self.project = self.project, None
        if project is not None:
            await asyncio.to_thread(project.stop)
        await asyncio.to_thread(shutil.rmtree, self.ctx.root, True)

    # --- results ---------------------------------------------------------------------------

    def _from_project(self, f: Finished) -> None:
        """Called in the project's thread; hands the result to the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            loop.call_soon_threadsafe(self._queue, f)

    def _queue(self, f: Finished) -> None:
        if f.requeued:
            log.info("app %s: %s#%d lost on %s (%s): issued again",
                     self.ctx.app.app_id, f.task, f.attempt, f.host, f.error)  # fmt: skip
            return
        self._undelivered.append(f)
        self._wake.set()

    async def _deliver_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._undelivered:
                f = self._undelivered[0]
                try:
                    await self.ctx.on_result(task_result(self.ctx.app.app_id, f), f.host or None)
                except Exception as e:
                    log.warning("app %s: result of %s#%d not taken (%s): again in %g s",
                                self.ctx.app.app_id, f.task, f.attempt, e, REDELIVER_S)  # fmt: skip
                    await asyncio.sleep(REDELIVER_S)
                    continue
                self._undelivered.popleft()


def task_result(app: str, f: Finished) -> TaskResult:
    """The core's view of one finished attempt (outputs laid out like the embedded worker's:
    ``stdout``, ``stderr``, and on exit 0 the declared outputs)."""
    return TaskResult(
        app=app,
        task=f.task,
        attempt=f.attempt,
        exit_code=f.exit_code,
        seconds=float(f.seconds),
        error=f.error,
        outputs=f.outputs,
        outputs_sha256=sha256_hex(f.outputs),
    )


__all__ = ["SAVED_KEY", "BoincCoordinator", "task_result"]
