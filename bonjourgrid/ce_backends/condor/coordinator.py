"""The HTCondor CE, coordinator side: a pool's head for one app, its tasks as HTCondor jobs.

::

    start()            fresh signing key, tokens for the head and the submitter; head config;
                       condor_master -> collector (CE port), negotiator, schedd
    prepare(worker) ── StageApp ─► (the volunteer turns Worker) ◄─ StageAck(ok)
                    ── mint <node>@workers.D, send CondorJoin ─► worker starts a startd
                    ◄─ CondorJoined(ok, machine)
    launch(task, attempt, None, inputs)
                       stage app files + predecessors' outputs in the job dir; submit
    poller             follows the jobs; each finished one -> TaskResult -> on_result(result)
    cancel(attempt)    condor_rm the job (no result is reported for it)
    stop()             stop the daemons, remove every file of the CE

HTCondor places the tasks (``places_tasks``): the core launches every ready task with
``worker=None`` and no slot accounting. Retries stay with the core (``max_retries = 0``): every
attempt is then journaled and committed once by (task, attempt) like on every backend, the
retry budget and failure semantics (a non-zero exit or a missing output counts as a failure)
are the core's, and a replica that takes over knows exactly which attempts existed.

Job layout (``jobs/<task>.<attempt>/``, owned by the job user, seen at the same path by the
schedd): ``in/`` holds the app's files and the predecessors' outputs and is transferred as
the scratch directory's contents; the command runs under a tiny ``/bin/sh`` wrapper that
packs the declared outputs present into ``.bjg-outputs.tgz`` (the one declared
``transfer_output_files``: always produced, so HTCondor never holds a job for a missing
output, nested paths keep their folders, and a failed task still comes back with its exit
code); ``stdout``/``stderr`` come back beside it. The result tar is laid out like the
embedded worker's (``stdout``, ``stderr``, and on exit 0 the declared outputs).

This module drives the head and the jobs; the parts with no daemon in them live beside it:
submission.py (a job's directory, wrapper and JobSpec), following.py (what the schedd's job
states mean for an attempt) and results.py (a finished job's files as a TaskResult).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING

from bonjourgrid.ce_backends.base import CoordinatorBackend, WorkerHandle
from bonjourgrid.ce_backends.condor import config, security
from bonjourgrid.ce_backends.condor.daemons import CondorDaemons, Spawn
from bonjourgrid.ce_backends.condor.following import Ended, Job, Step, next_step, node_of
from bonjourgrid.ce_backends.condor.installation import Installation, require
from bonjourgrid.ce_backends.condor.jobs import CondorClient, JobInfo, JobSpec
from bonjourgrid.ce_backends.condor.results import collect_result
from bonjourgrid.ce_backends.condor.submission import job_spec, stage_job_dir
from bonjourgrid.ce_backends.staging import stage_app
from bonjourgrid.control.messages import CondorJoin, CondorJoined, TaskResult
from bonjourgrid.safepath import under

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.ce_backends.registry import AppView, CoordinatorContext
    from bonjourgrid.states.tasktable import Attempt

log = logging.getLogger(__name__)

HEAD_DAEMONS = ("MASTER", "COLLECTOR", "NEGOTIATOR", "SCHEDD")
POLL_S = 0.25
"""Seconds between two looks at the queue: small next to a job's ~1 s submit-to-done."""
JOIN_TIMEOUT_S = 30.0
LISTED_POLL_S = 0.1
"""Seconds between two looks for a new member's startd in the collector (a local query)."""
"""A worker's startd is ready in ~0.05 s; a loaded machine and a chroot take longer."""
CLIENT_CONFIG = "client.config"


# --- the backend ---------------------------------------------------------------------------------

ResultSink = Callable[[TaskResult], Awaitable[None]]


def ce_id_for(app_id: str) -> str:
    """A fresh CE id for ``app_id`` (a DNS-label-like string; new for every head)."""
    label = re.sub(r"[^a-z0-9-]", "-", app_id.lower())[:24].strip("-") or "app"
    return f"{label}-{secrets.token_hex(3)}"


def machine_name(address: str) -> str:
    """HTCondor's Machine name for a host at ``address`` (NO_DNS: made from the address)."""
    return f"{address.replace('.', '-')}.{config.DOMAIN}"


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


class CondorCoordinator(CoordinatorBackend):
    """One CE's HTCondor head on the coordinator; HTCondor places the tasks.

    ``address`` is the coordinator's LAN (link-local) address, ``root`` a directory of its
    own (removed by :meth:`stop`). ``on_result`` receives each finished attempt's
    :class:`TaskResult`; a job's files are removed only once it returned (an exception keeps
    the result, delivered again at the next poll). ``spawn`` runs condor_master (tests pass
    a virtual-LAN host's ``popen``). Threading: everything runs on the event loop; the
    blocking bindings and tools run in worker threads.
    """

    name = "condor"
    places_tasks = True

    def __init__(
        self,
        app: AppView,
        *,
        address: str,
        root: Path,
        on_result: ResultSink | None = None,
        inst: Installation | None = None,
        port: int | None = None,
        spawn: Spawn | None = None,
        poll_interval: float = POLL_S,
    ) -> None:
        self.app = app
        self.address = address
        self.root = Path(root)
        self.on_result = on_result
        self.inst = inst
        self.port = port
        self.names = config.CeNames(ce_id_for(app.app_id))
        self.members: dict[str, str] = {}
        """Worker node id -> its HTCondor Machine name (from CondorJoined)."""
        self.ran_on: dict[tuple[str, int], str] = {}
        """(task, attempt) -> node id of the worker whose startd ran it (when known)."""
        self.client: CondorClient | None = None
        self._spawn = spawn
        self._poll_interval = poll_interval
        self._head: CondorDaemons | None = None
        self._key: Path | None = None
        self._jobs: dict[int, Job] = {}
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    @classmethod
    def from_context(cls, ctx: CoordinatorContext) -> CondorCoordinator:
        """The backend as the core makes it (ce_backends/registry.py)."""
        made = cls(ctx.app, address=ctx.address, root=ctx.root)

        async def deliver(result: TaskResult) -> None:
            await ctx.on_result(result, made.ran_on.get((result.task, result.attempt)))

        made.on_result = deliver
        return made

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def client_config(self) -> Path:
        """The submitter's condor_config (the CE's pool, its token): for HTCondor's tools."""
        return self.root / CLIENT_CONFIG

    # --- CoordinatorBackend ----------------------------------------------------------------

    async def start(self) -> None:
        if self._head is not None:
            return
        if self.on_result is None:
            raise RuntimeError("CondorCoordinator needs on_result before start()")
        await asyncio.to_thread(self._start_head)
        self._poller = asyncio.create_task(self._poll_loop(), name=f"condor {self.app.app_id}")

    def _start_head(self) -> None:
        inst = self.inst = self.inst or require()
        names = self.names
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(exist_ok=True)
        os.chmod(self.jobs_dir, 0o755)
        key = self._key = security.make_signing_key(inst, self.keys_dir)
        head_dir = self.root / "head"
        td = names.trust_domain
        mint = security.mint_token
        security.install_token(
            head_dir / "tokens", "head", mint(inst, key, trust_domain=td, identity=names.head)
        )
        client_tokens = self.root / "client-tokens"
        security.install_token(
            client_tokens, names.ce_id, mint(inst, key, trust_domain=td, identity=names.submitter)
        )
        self.port = self.port or _free_port(self.address)
        text = config.head_config(
            names,
            address=self.address,
            port=self.port,
            local_dir=head_dir / "local",
            key_file=key,
            token_dir=head_dir / "tokens",
        )
        self._head = CondorDaemons(
            inst,
            head_dir,
            text,
            daemons=HEAD_DAEMONS,
            binds=[self.keys_dir, self.jobs_dir],
            spawn=self._spawn,
        )
        self._head.start()
        self._head.wait_ready()
        params = config.client_params(
            names, head_address=self.address, head_port=self.port, token_dir=client_tokens
        )
        # For people and tests: CONDOR_CONFIG=<root>/client.config condor_status, condor_q.
        self.client_config.write_text("".join(f"{k} = {v}\n" for k, v in params.items()))
        self.client = CondorClient(params)

    async def prepare(self, worker: WorkerHandle) -> None:
        """Stage the app like the embedded backend (the volunteer turns Worker on the ack;
        CondorWorker.stage keeps nothing: HTCondor moves each job's files), then have the
        worker join this head's pool. Raises if either step fails (the core releases it)."""
        if self._head is None or self._key is None or self.inst is None:
            raise RuntimeError("the CE's head is not running")
        await stage_app(self.app, worker)
        token = await asyncio.to_thread(
            security.mint_token,
            self.inst,
            self._key,
            trust_domain=self.names.trust_domain,
            identity=self.names.worker(worker.node),
        )
        assert self.port is not None
        await worker.send(
            CondorJoin(
                self.app.app_id, self.app.term, self.names.ce_id, self.address, self.port, token
            )
        )
        reply = await worker.expect(CondorJoined, JOIN_TIMEOUT_S)
        assert isinstance(reply, CondorJoined)
        if not reply.ok:
            raise RuntimeError(f"could not join the HTCondor pool: {reply.error}")
        self.members[worker.node] = reply.machine
        self._background(self._match_when_listed(reply.machine))

    async def _match_when_listed(self, machine: str) -> None:
        """Once the new startd's ad reaches the collector (~1-2 s after it starts), ask for a
        negotiation cycle instead of waiting for the next one (NEGOTIATOR_INTERVAL)."""
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while not self._stopped and time.monotonic() < deadline and self.client is not None:
            try:
                if machine in await asyncio.to_thread(self.client.machines):
                    await asyncio.to_thread(self.client.reschedule)
                    return
            except Exception as e:  # the next regular cycle will do
                log.debug("app %s: reschedule for %s: %s", self.app.app_id, machine, e)
                return
            await asyncio.sleep(LISTED_POLL_S)

    async def launch(
        self, task: TaskSpec, attempt: Attempt, worker: WorkerHandle | None, inputs: bytes
    ) -> None:
        client = self.client
        if client is None or self._stopped:
            raise RuntimeError("the CE's head is not running")
        job_dir = under(self.jobs_dir, f"{task.id}.{attempt.attempt}")
        spec = await asyncio.to_thread(self._stage, task, attempt.attempt, job_dir, inputs)
        cluster = await asyncio.to_thread(client.submit, spec)
        self._jobs[cluster] = Job(task, attempt.attempt, job_dir, cluster, time.monotonic())
        log.debug("app %s: %s#%d is job %d", self.app.app_id, task.id, attempt.attempt, cluster)

    def _stage(self, task: TaskSpec, attempt: int, job_dir: Path, inputs: bytes) -> JobSpec:
        assert self.inst is not None
        has_inputs = stage_job_dir(job_dir, bundle=self.app.bundle, inputs=inputs, inst=self.inst)
        return job_spec(
            task, attempt, app_id=self.app.app_id, job_dir=job_dir, has_inputs=has_inputs
        )

    async def cancel(self, attempt: Attempt, worker: WorkerHandle | None) -> None:
        job = self._find(attempt.task, attempt.attempt)
        if job is None or job.cancelled:
            return
        job.cancelled = True
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.client.remove, [job.cluster])

    def worker_lost(self, node: str) -> None:
        """The core lost ``node``: its jobs go back to the queue at once (HTCondor alone would
        wait for the claim's lease) and run again, as the same attempts, on another slot."""
        self.members.pop(node, None)
        lost = [
            job
            for job in self._jobs.values()
            if job.result is None
            and not job.cancelled
            and self.ran_on.get((job.task.id, job.attempt)) == node
        ]
        if not lost or self.client is None or self._stopped:
            return
        for job in lost:
            job.requeuing = True
        self._background(self._requeue(lost, node))

    def _background(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _requeue(self, jobs: list[Job], node: str) -> None:
        assert self.client is not None
        try:
            await asyncio.to_thread(
                self.client.requeue, [j.cluster for j in jobs], f"worker {node} lost"
            )
        except Exception as e:  # the shadow will notice the loss itself, later
            log.warning("app %s: cannot requeue the jobs of %s: %s", self.app.app_id, node, e)
        for job in jobs:
            job.requeuing = False
            job.running_since = None
            self.ran_on.pop((job.task.id, job.attempt), None)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for t in [*self._tasks, self._poller]:
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        await asyncio.to_thread(self._stop_files)

    def _stop_files(self) -> None:
        if self._head is not None:
            self._head.stop()
        if self.inst is not None:
            self.inst.forget_binds([self.keys_dir, self.jobs_dir])
        shutil.rmtree(self.root, ignore_errors=True)
        self._jobs.clear()

    # --- views -----------------------------------------------------------------------------

    async def machines(self) -> list[str]:
        """The machines with a startd in the CE's pool, as the collector lists them."""
        if self.client is None:
            return []
        return await asyncio.to_thread(self.client.machines)

    def running(self) -> list[tuple[str, int]]:
        """(task, attempt) of every job still followed."""
        return [(j.task.id, j.attempt) for j in self._jobs.values() if not j.cancelled]

    def _find(self, task: str, attempt: int) -> Job | None:
        for job in self._jobs.values():
            if job.task.id == task and job.attempt == attempt:
                return job
        return None

    # --- following the jobs ------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self._poll_interval)
            if not self._jobs or self.client is None:
                continue
            try:
                infos = await asyncio.to_thread(self.client.jobs, list(self._jobs))
            except Exception as e:  # the schedd is busy or restarting: try again
                log.warning("app %s: cannot query HTCondor: %s", self.app.app_id, e)
                continue
            for cluster, job in list(self._jobs.items()):
                info = infos.get(cluster)
                if info is not None or job.result is not None:
                    await self._follow(job, info)

    async def _follow(self, job: Job, info: JobInfo | None) -> None:
        now = time.monotonic()
        key = (job.task.id, job.attempt)
        if info is not None and info.remote_host:
            node = node_of(self.members, info.remote_host)
            if node is not None:
                self.ran_on[key] = node
        if job.result is None and info is not None:
            step = next_step(job, info, now)
            if step is Step.FORGET:
                self._forget(job)
            elif step is Step.EVICTED:
                log.info("app %s: %s#%d given back to HTCondor's queue", self.app.app_id, *key)
            elif isinstance(step, Ended):
                if step.remove:
                    await self._remove(job)
                job.result = await self._collect(job, step.exit_code, step.seconds, step.error)
        if job.result is None or self.on_result is None:
            return
        try:
            await self.on_result(job.result)
        except Exception as e:  # kept; delivered again at the next poll
            log.warning("app %s: result of %s#%d not taken: %s", self.app.app_id, *key, e)
            return
        self._forget(job)

    async def _remove(self, job: Job) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.client.remove, [job.cluster])

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.cluster, None)
        shutil.rmtree(job.dir, ignore_errors=True)

    async def _collect(
        self, job: Job, exit_code: int | None, seconds: float, error: str
    ) -> TaskResult:
        return await asyncio.to_thread(
            collect_result,
            self.app.app_id,
            job.task,
            job.attempt,
            job.dir,
            exit_code=exit_code,
            seconds=seconds,
            error=error,
        )


__all__ = [
    "CondorCoordinator",
    "CondorJoin",
    "CondorJoined",
    "ce_id_for",
    "machine_name",
]
