"""The embedded task farm, volunteer side: stage one app's files, run its tasks in slots.

One ``EmbeddedWorker`` exists per app the volunteer serves (at most one at a time). Results
are kept until the coordinator acknowledges them (``ResultAck``), so a result finished while
the channel was down is re-sent to whichever coordinator (same app, term >= ours) reconnects:
a crash of the link never loses a finished task.

A worker never runs more than its slots: a ``RunTask`` whose ``cpus`` do not fit in the free
slots is answered at once with a failed result (``no free slot here``), never run. A result
too large for one control frame is replaced by a failed result saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from bonjourgrid.app.bundle import extract_bundle, sha256_hex
from bonjourgrid.ce_backends.base import WorkerBackend
from bonjourgrid.ce_backends.embedded.sandbox import (
    DEFAULT_SANDBOX,
    SandboxConfig,
    TaskControl,
    TaskRun,
    run_task,
)
from bonjourgrid.control.codec import MAX_MESSAGE
from bonjourgrid.control.messages import NO_FREE_SLOT, RunTask, TaskResult, failed_result

log = logging.getLogger(__name__)

ResultSink = Callable[[TaskResult], Awaitable[None]]

_RESULT_HEADROOM = 1024 * 1024
"""Bytes of a result message besides its outputs (ids, error text, JSON), kept free."""
MAX_RESULT_OUTPUTS = MAX_MESSAGE - _RESULT_HEADROOM
"""Largest outputs blob one ``TaskResult`` frame can carry."""


class EmbeddedWorker(WorkerBackend):
    name = "embedded"

    def __init__(
        self,
        app: str,
        root: Path,
        sandbox: SandboxConfig = DEFAULT_SANDBOX,
        *,
        slots: int | None = None,
    ) -> None:
        """``slots``: how many CPUs' worth of tasks run at once (default: this machine's)."""
        self.app = app
        self.slots = max(1, slots if slots is not None else (os.cpu_count() or 1))
        self.root = root
        self.files = root / "files"
        self.scratch = root / "tasks"
        self.sandbox = sandbox
        self.staged_sha: str | None = None
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._slots: dict[tuple[str, int], int] = {}
        self._cpus: dict[tuple[str, int], int] = {}
        self._controls: dict[tuple[str, int], TaskControl] = {}
        self._suspended = False
        self._unacked: dict[tuple[str, int], TaskResult] = {}
        self._sink: ResultSink | None = None
        self._refusals: set[asyncio.Task[None]] = set()

    # --- WorkerBackend -------------------------------------------------------------------

    async def stage(self, bundle: bytes, sha256: str) -> None:
        if sha256_hex(bundle) != sha256:
            raise ValueError("app bundle checksum mismatch")
        if self.staged_sha == sha256:
            return
        await asyncio.to_thread(self._extract, bundle)
        self.staged_sha = sha256

    def _extract(self, bundle: bytes) -> None:
        shutil.rmtree(self.files, ignore_errors=True)
        self.files.mkdir(parents=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        if bundle:
            try:
                extract_bundle(
                    bundle,
                    self.files,
                    max_bytes=self.sandbox.max_unpack_mb * 1024 * 1024,
                    max_members=self.sandbox.max_unpack_files,
                )
            except Exception:
                shutil.rmtree(self.files, ignore_errors=True)  # nothing half-staged stays
                raise

    def attach(self, sink: ResultSink | None) -> list[TaskResult]:
        """Route results to ``sink`` (a live channel); returns results still unacknowledged."""
        self._sink = sink
        return list(self._unacked.values())

    def running(self) -> list[str]:
        return [f"{task}#{attempt}" for task, attempt in self._running]

    def has(self, task: str, attempt: int) -> bool:
        """Whether this attempt runs here or its result waits for an acknowledgement."""
        return (task, attempt) in self._running or (task, attempt) in self._unacked

    def start(self, msg: RunTask) -> None:
        key = (msg.task, msg.attempt)
        if key in self._running or key in self._unacked:
            return  # a duplicate request: the attempt is already running or done
        if self.staged_sha is None:
            raise RuntimeError("task before staging")
        used = sum(self._cpus.values())
        cpus = max(1, msg.cpus)
        if used + cpus > self.slots:
            why = f"{NO_FREE_SLOT} ({used} of {self.slots} in use, the task needs {cpus})"
            log.warning("refused task %s#%d: %s", msg.task, msg.attempt, why)
            result = failed_result(self.app, msg.task, msg.attempt, why)
            self._unacked[key] = result
            if self._sink is not None:
                sink = self._sink
                t = asyncio.create_task(self._deliver(sink, result), name=f"refusal {msg.task}")
                self._refusals.add(t)
                t.add_done_callback(self._refusals.discard)
            return
        run = TaskRun(
            app=msg.app,
            task=msg.task,
            attempt=msg.attempt,
            argv=msg.argv,
            env=dict(msg.env),
            timeout=msg.timeout,
            outputs=msg.outputs,
            inputs=msg.inputs,
            inputs_sha256=msg.inputs_sha256,
            memory_mb=msg.memory_mb,
            network=msg.network,
        )
        taken = set(self._slots.values())
        self._slots[key] = min(n for n in range(len(taken) + 1) if n not in taken)
        self._cpus[key] = cpus
        control = TaskControl()
        if self._suspended:
            control.suspend()
        self._controls[key] = control
        self._running[key] = asyncio.create_task(self._run(run), name=f"task {msg.task}")

    def suspend(self) -> None:
        """Stop every running task's process group (SIGSTOP): the owner is back."""
        self._suspended = True
        for control in self._controls.values():
            control.suspend()

    def resume(self) -> None:
        """Continue every suspended task (SIGCONT)."""
        self._suspended = False
        for control in self._controls.values():
            control.resume()

    @property
    def suspended(self) -> bool:
        return self._suspended

    async def _run(self, run: TaskRun) -> None:
        key = (run.task, run.attempt)
        try:
            outcome = await run_task(
                run,
                app_files=self.files,
                scratch=self.scratch,
                config=self.sandbox,
                slot=self._slots[key],
                control=self._controls[key],
            )
        except Exception as e:  # never let a bug in the sandbox lose track of an attempt
            log.exception("task %s#%d crashed the sandbox", run.task, run.attempt)
            result = failed_result(self.app, run.task, run.attempt, f"worker error: {e}")
        else:
            result = TaskResult(
                app=self.app,
                task=run.task,
                attempt=run.attempt,
                exit_code=outcome.exit_code,
                seconds=outcome.seconds,
                error=outcome.error,
                outputs=outcome.outputs,
                outputs_sha256=outcome.outputs_sha256,
            )
        finally:
            self._running.pop(key, None)
            self._slots.pop(key, None)
            self._cpus.pop(key, None)
            self._controls.pop(key, None)
        if len(result.outputs) > MAX_RESULT_OUTPUTS:
            why = f"result of {len(result.outputs)} bytes is too large for one message"
            log.warning("task %s#%d: %s", run.task, run.attempt, why)
            result = failed_result(self.app, run.task, run.attempt, why, result.seconds)
        self._unacked[key] = result
        if self._sink is not None:
            await self._deliver(self._sink, result)

    async def _deliver(self, sink: ResultSink, result: TaskResult) -> None:
        try:
            await sink(result)
        except Exception as e:  # channel gone: kept for the next coordinator link
            log.info(
                "result %s#%d kept until a coordinator reconnects (%s)",
                result.task,
                result.attempt,
                e,
            )

    def acknowledged(self, task: str, attempt: int) -> None:
        self._unacked.pop((task, attempt), None)

    async def cancel(self, task: str, attempt: int) -> None:
        t = self._running.pop((task, attempt), None)
        if t is not None:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def close(self) -> None:
        """Kill every running task and remove the app's files."""
        tasks = list(self._running.values())
        self._running.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for r in list(self._refusals):
            r.cancel()
        self._unacked.clear()
        self._sink = None
        await asyncio.to_thread(shutil.rmtree, self.root, True)
