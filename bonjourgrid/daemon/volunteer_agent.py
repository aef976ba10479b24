"""The volunteer side of the control channel: reservations, staging, tasks, release.

Drives the pure ``Volunteer`` machine with what arrives on authenticated channels and the
monotonic clock, runs the app's tasks through its worker backend, and tells the daemon when
the advertised state changes. Every reservation change is appended to the volunteer's own
log (``reservations.jsonl``), which is how tests prove no machine served two apps at once.

Trust (docs/security.md): a Reserve is accepted only from the node the channel proved, with a
valid app signature where ``trusted_users`` is set (bound to the app id and CE key), and with
the CE key's proof of coordination (app/ce_key.py) — the first one and any re-homing. Every
RunTask is checked against the spec the app was accepted with (app/task_check.py) before it
runs; a mismatch is answered with a failed result and logged (``refused-task``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bonjourgrid.app.ce_key import proof_problem
from bonjourgrid.app.signing import TrustList
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.ce_backends.base import WorkerBackend
from bonjourgrid.ce_backends.embedded import bwrap
from bonjourgrid.ce_backends.embedded.sandbox_config import DEFAULT_SANDBOX, SandboxConfig
from bonjourgrid.ce_backends.registry import WorkerContext, make_worker
from bonjourgrid.config import Config
from bonjourgrid.control.channel import Channel
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.messages import (
    AppEnded,
    CancelTask,
    Fenced,
    GiveBack,
    Heartbeat,
    HeartbeatAck,
    JournalAppend,
    Release,
    ReplicaOpen,
    Replicas,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
    failed_result,
)
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.volunteer_trust import admit, task_problem
from bonjourgrid.safepath import under
from bonjourgrid.states import volunteer as v

log = logging.getLogger(__name__)

ReplicaHandler = Callable[[object], Awaitable[object | None]]
"""Handles a replication message (ReplicaOpen, JournalAppend, Replicas, AppEnded) from the
coordinator; returns the reply to send, if any."""


class VolunteerAgent:
    def __init__(
        self,
        *,
        host: HostInfo,
        config: Config,
        work_dir: Path,
        reservation_log: Path,
        on_state_change: Callable[[], Awaitable[None]],
        offering: bool = True,
        on_replica: ReplicaHandler | None = None,
        execution_log: Path | None = None,
        on_rehomed: Callable[[str, int], None] = lambda app, term: None,
        trusted: TrustList | None = None,
        sandbox: SandboxConfig = DEFAULT_SANDBOX,
    ) -> None:
        self.host = host
        self.config = config
        self.work_dir = work_dir
        self.reservation_log = reservation_log
        self.offering = offering
        """False for a private daemon (a `submit`/`status` with no `join`): refuses reservations."""
        self.machine = v.Volunteer(max_lease=config.max_lease)
        self.worker: WorkerBackend | None = None
        self._link: Channel | None = None
        self._on_state_change = on_state_change
        self._on_replica = on_replica
        self._on_rehomed = on_rehomed
        self.execution_log = execution_log
        """Where every task start is appended (how tests count executions per task)."""
        self.last_heard = 0.0
        """Monotonic time of the last message from the coordinator we serve."""
        self._answers: set[asyncio.Task[None]] = set()
        """Backend messages being answered (a startd starting) while the link goes on."""
        self.trusted = trusted
        """Whose apps this volunteer runs (``trusted_users``); None: any app of the grid."""
        self.sandbox = sandbox
        self.owner_busy = False
        """The owner policy says the owner uses the machine: reservations are refused."""
        self._suspended = False
        self._given_back = False
        """Tasks were given back in this busy period: new ones go back at once."""
        self._signed_sha: str | None = None
        """The bundle checksum the accepted app's signature covers (StageApp must match)."""
        self._spec: AppSpec | None = None
        """The spec the app was accepted with (the signed one when signed): every RunTask
        must be one of its tasks exactly as it says."""
        self._ce_public: bytes | None = None
        """The app's CE public key: every Reserve (re-homing too) must be proven with it."""

    # --- what the daemon asks --------------------------------------------------------------

    @property
    def state(self) -> str:
        return self.machine.advertised

    @property
    def app(self) -> str | None:
        a = self.machine.assignment
        return a.app if a else None

    @property
    def coordinator(self) -> str | None:
        a = self.machine.assignment
        return a.coordinator if a else None

    @property
    def linked(self) -> bool:
        """Whether a coordinator's channel is open now."""
        return self._link is not None

    @functools.cached_property
    def isolation(self) -> bwrap.Isolation:
        """How this volunteer isolates tasks (probed once; said once in the log)."""
        iso = bwrap.isolation_for(self.sandbox.bwrap, self.sandbox.allow_unisolated)
        if iso.refuses:
            log.warning("this volunteer refuses tasks: %s", iso.refusal())
        elif iso.mode == bwrap.UNISOLATED:
            log.warning("tasks run WITHOUT isolation (the owner allowed it): %s", iso.reason)
        else:
            log.info("tasks are isolated here by %s", iso.mode)
        return iso

    def free_slots(self) -> int:
        if self.machine.state is v.VolunteerState.IDLE:
            return self.host.slots
        return max(0, self.host.slots - len(self.worker.running())) if self.worker else 0

    async def tick(self) -> None:
        """Expire a lease that nobody renewed (the coordinator died or was cut off)."""
        if self.machine.state is v.VolunteerState.IDLE:
            return
        app = self.app
        out = self.machine.handle(v.Expire(time.monotonic()))
        if isinstance(out, v.Accepted) and out.state is v.VolunteerState.IDLE:
            log.warning("reservation for app %s expired: back to idle", app)
            await self._back_to_idle(app or "?", "lease expired")

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.close()
            self.worker = None

    # --- a coordinator's channel ------------------------------------------------------------

    async def serve(self, ch: Channel, first: Reserve) -> None:
        """Answer a reservation; if accepted, serve the coordinator on this channel."""
        if first.coordinator != ch.peer_node:
            # The coordinator is the node the handshake proved, never the one a grid-key
            # holder names (the channel refuses such a Reserve too: control/sender_claims.py).
            log.warning("refused a Reserve from %s naming coordinator %s", ch, first.coordinator)
            return
        if not self.offering:
            await ch.send(ReserveReply(first.app, False, "not volunteering", 0))
            return
        was_idle = self.machine.state is v.VolunteerState.IDLE
        if was_idle and first.backend not in self.host.backends:
            why = f"backend {first.backend!r} is not available here"
            await ch.send(ReserveReply(first.app, False, why, 0))
            return
        if was_idle and self.isolation.refuses:
            why = self.isolation.refusal()
            self._log("refused", first.app, first.coordinator, first.term, reason=why)
            await ch.send(ReserveReply(first.app, False, why, 0))
            return
        if was_idle and self.owner_busy:
            await ch.send(ReserveReply(first.app, False, "the owner is using this machine", 0))
            return
        spec: AppSpec | None = None
        ce_public = self._ce_public if self.app == first.app else None
        if was_idle:
            why, spec, ce_public = admit(first, self.trusted)
            if why:
                log.warning("refused app %s of %s: %s", first.app, first.coordinator_host, why)
                self._log("refused", first.app, first.coordinator, first.term, reason=why)
                await ch.send(ReserveReply(first.app, False, why, 0))
                return
        unproven = (
            "no CE key is known for this app"
            if ce_public is None
            else proof_problem(
                ce_public,
                first.proof,
                app=first.app,
                term=first.term,
                coordinator=first.coordinator,
                volunteer=self.host.node_id,
            )
        )
        if first.lease > self.machine.max_lease:
            log.warning(
                "app %s: lease of %.0f s asked by %s clipped to max_lease %.0f s",
                first.app,
                first.lease,
                first.coordinator_host,
                self.machine.max_lease,
            )
        outcome = self.machine.handle(
            v.Reserve(
                first.app,
                first.coordinator,
                first.term,
                time.monotonic(),
                first.lease,
                proven=unproven is None,
            )
        )
        if isinstance(outcome, v.Refused):
            why = outcome.reason + (f" ({unproven})" if unproven else "")
            if unproven:
                log.warning(
                    "refused reservation of app %s term %d by %s: %s",
                    first.app,
                    first.term,
                    first.coordinator_host,
                    why,
                )
                self._log("refused", first.app, first.coordinator, first.term, reason=why)
            if outcome.fenced_by:
                await ch.send(Fenced(first.app, outcome.fenced_by))
            else:
                await ch.send(ReserveReply(first.app, False, why, 0))
            return
        if not was_idle:
            self._on_rehomed(first.app, first.term)
        if was_idle:
            ctx = WorkerContext(
                app=first.app,
                root=under(self.work_dir, first.app),
                address=ch.local_address,
                slots=self.host.slots,
                node=self.host.node_id,
                sandbox=self.sandbox,
            )
            self.worker = make_worker(first.backend, ctx)
            self._signed_sha = first.bundle_sha256 if first.signature else None
            self._spec, self._ce_public = spec, ce_public
            self._log("reserved", first.app, first.coordinator, first.term)
            await self._on_state_change()
        await ch.send(ReserveReply(first.app, True, "", self.host.slots))
        await self._serve_link(ch, first.app)

    async def _serve_link(self, ch: Channel, app: str) -> None:
        old, self._link = self._link, ch
        if old is not None and old is not ch:
            await old.close()
        worker = self.worker
        assert worker is not None
        worker.serving(ch.peer_address[0])

        async def sink(result: TaskResult) -> None:
            await ch.send(result)

        for pending in worker.attach(sink):
            await ch.send(pending)
        self.last_heard = time.monotonic()
        try:
            while True:
                msg = await ch.recv()
                self.last_heard = time.monotonic()
                if getattr(msg, "app", app) != app:
                    log.warning(
                        "dropped %s for app %s on app %s's link", type(msg).__name__, msg, app
                    )
                    continue
                if not await self._on_message(ch, msg):
                    return
        except ChannelClosed as e:
            log.info(
                "link to app %s's coordinator closed (%s); reservation kept until its lease ends",
                app,
                e,
            )
        finally:
            if self._link is ch:
                self._link = None
                if self.worker is worker:
                    worker.attach(None)

    async def _on_message(self, ch: Channel, msg: object) -> bool:
        """Handle one message; False ends the conversation."""
        m = self.machine
        worker = self.worker
        if worker is None:
            return False
        if isinstance(msg, Heartbeat):
            out = m.handle(v.Renew(msg.app, msg.term, time.monotonic(), msg.lease))
            if isinstance(out, v.Refused):
                log.warning("refused heartbeat: %s", out.reason)
                if out.fenced_by:
                    await ch.send(Fenced(msg.app, out.fenced_by))
                return False
            await ch.send(HeartbeatAck(msg.app, msg.term, tuple(worker.running())))
        elif isinstance(msg, StageApp):
            try:
                if self._signed_sha is not None and msg.sha256 != self._signed_sha:
                    raise ValueError("the bundle is not the one the app's signature covers")
                await worker.stage(msg.bundle, msg.sha256)
                out = m.handle(v.Activate(msg.app, msg.term))
                error = out.reason if isinstance(out, v.Refused) else ""
            except Exception as e:
                error = f"staging failed: {e}"
            await ch.send(StageAck(msg.app, msg.sha256, not error, error))
            if not error:
                await self._on_state_change()
        elif isinstance(msg, RunTask):
            a = m.assignment
            if a is None or msg.term != a.term or m.state is not v.VolunteerState.WORKER:
                log.warning("refused task %s: stale, unstaged or of an unproven term", msg.task)
                return True
            if self._given_back and not worker.has(msg.task, msg.attempt):
                await ch.send(GiveBack(msg.app, msg.task, msg.attempt, "the owner is back"))
                return True
            if not worker.has(msg.task, msg.attempt):
                why = await self._task_problem(msg)
                if why:
                    log.warning(
                        "refused task %s#%d of app %s from %s: %s",
                        msg.task,
                        msg.attempt,
                        msg.app,
                        a.coordinator,
                        why,
                    )
                    self._log("refused-task", msg.app, a.coordinator, a.term, reason=why)
                    error = f"refused by the volunteer: {why}"
                    await ch.send(failed_result(msg.app, msg.task, msg.attempt, error))
                    return True
                self._log_execution(msg)
            worker.start(msg)
        elif isinstance(msg, ResultAck):
            # A stale coordinator's acknowledgement must not make us drop a result that the
            # higher term still needs (it did not commit it: a quorum refused that term).
            if msg.term >= m.highest_term(msg.app):
                worker.acknowledged(msg.task, msg.attempt)
        elif isinstance(msg, CancelTask):
            await worker.cancel(msg.task, msg.attempt)
        elif isinstance(msg, AppEnded):
            log.info("app %s ended: %s", msg.app, msg.outcome)
            if self._on_replica is not None:
                await self._on_replica(msg)
        elif isinstance(msg, (ReplicaOpen, JournalAppend, Replicas)):
            if self._on_replica is not None:
                reply = await self._on_replica(msg)
                if reply is not None:
                    await ch.send(reply)
        elif worker.handles and isinstance(msg, worker.handles):
            # A backend may take seconds to answer (a startd starts): keep heartbeats flowing.
            t = asyncio.create_task(self._answer(ch, worker, msg))
            self._answers.add(t)
            t.add_done_callback(self._answers.discard)
        elif isinstance(msg, Release):
            out = m.handle(v.Release(msg.app, msg.term))
            if isinstance(out, v.Refused):
                log.warning("refused release: %s", out.reason)
                return True
            await self._back_to_idle(msg.app, msg.reason or "released")
            return False
        else:
            log.warning("unexpected %s on a coordinator link: dropped", type(msg).__name__)
        return True

    # --- the owner policy (bonjourgrid/policy) ---------------------------------------------

    async def _task_problem(self, msg: RunTask) -> str | None:
        if self._spec is None:
            return "no spec was accepted for this app"
        return await asyncio.to_thread(task_problem, self._spec, msg, self.sandbox)

    def has_tasks(self) -> bool:
        return self.worker is not None and bool(self.worker.running())

    def suspend(self) -> None:
        """The owner is back: stop every task (tasks started later are stopped at once)."""
        self._suspended = True
        if self.worker is not None:
            self.worker.suspend()

    def resume(self) -> None:
        """The owner left: continue the stopped tasks."""
        self._suspended, self._given_back = False, False
        if self.worker is not None:
            self.worker.resume()

    async def give_back(self, reason: str) -> list[str]:
        """Hand every running attempt back to its coordinator (``GiveBack``) and kill it;
        the coordinator runs it elsewhere. Returns the attempts given back."""
        self._given_back = True
        worker, link = self.worker, self._link
        if worker is None:
            return []
        by_middleware = await worker.give_back(reason)  # HTCondor, BOINC: their own means
        if by_middleware is not None:
            log.warning("gave back %s through %s: %s", by_middleware, worker.name, reason)
            return by_middleware
        given = worker.running()
        for name in given:
            task, _, attempt = name.rpartition("#")
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.send(GiveBack(self.app or "", task, int(attempt), reason))
            await worker.cancel(task, int(attempt))
        if given:
            log.warning("gave back %s: %s", ", ".join(given), reason)
        return given

    async def _answer(self, ch: Channel, worker: WorkerBackend, msg: object) -> None:
        try:
            reply = await worker.handle(msg)
            if reply is not None:
                await ch.send(reply)
        except Exception as e:
            log.warning("%s for app %s failed: %s", type(msg).__name__, self.app, e)

    async def _back_to_idle(self, app: str, reason: str) -> None:
        self._spec, self._ce_public, self._signed_sha = None, None, None
        worker, self.worker = self.worker, None
        link, self._link = self._link, None
        if worker is not None:
            await worker.close()
        self._log("released", app, "", 0, reason=reason)
        await self._on_state_change()
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()

    def _log_execution(self, msg: RunTask) -> None:
        if self.execution_log is None:
            return
        entry = {"t": time.time(), "app": msg.app, "task": msg.task, "attempt": msg.attempt}
        self.execution_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.execution_log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _log(self, event: str, app: str, coordinator: str, term: int, *, reason: str = "") -> None:
        entry = {
            "t": time.time(),
            "event": event,
            "app": app,
            "coordinator": coordinator,
            "term": term,
            "reason": reason,
        }
        self.reservation_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.reservation_log, "a") as f:
            f.write(json.dumps(entry) + "\n")
