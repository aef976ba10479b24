"""Events from the workers of an app: results committed exactly once (by task and attempt)
and acknowledged once durable on the replicas, attempts given back, workers lost.

A result or a give-back for the latest attempt of a task is accepted only from the worker
that attempt was placed on: the link's peer node is proven by the control handshake
(control/auth.py), and any other grid-key holder's claim about it is refused, logged, and
ends its link; the attempt keeps running where it was placed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.control.messages import (
    Fenced,
    GiveBack,
    HeartbeatAck,
    JournalAck,
    ResultAck,
    TaskResult,
    is_refusal,
)
from bonjourgrid.coordinator.app_coordinator_base import AppCoordinatorBase
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.tasktable import Attempt

log = logging.getLogger(__name__)


class WorkerEvents(AppCoordinatorBase):
    """The part of ``AppCoordinator`` that handles what workers and backends send (a mixin)."""

    def _not_placed_there(self, link: WorkerLink, task: str, attempt: int) -> str | None:
        """Why ``link`` may not speak for attempt ``attempt`` of ``task`` (None: it may).

        The task table knows where each task's latest attempt was placed; only that attempt
        can change the table (``accepts``), so only it needs guarding. An older attempt's
        result changes nothing and is handled as before (a duplicate is acknowledged).
        """
        if task not in self.spec.task_ids:
            return None  # dropped by the handlers: names no task of ours
        rec = self.table.record(task)
        peer = link.channel.peer_node
        if attempt == rec.attempts and rec.worker != peer:
            return (
                f"{task}#{attempt} was placed on {rec.worker or 'the CE middleware'}, "
                f"not on {peer} ({link.host})"
            )
        return None

    async def _refuse_claim(self, link: WorkerLink, kind: str, why: str) -> None:
        """Log and end the link: its reader then sees the close and the worker counts as
        lost (what it ran for us is requeued), whatever it claimed about others' attempts."""
        log.warning(
            "app %s: refused a %s from %s: %s; closing its link", self.app_id, kind, link.host, why
        )
        await link.channel.close()

    async def _on_message(self, link: WorkerLink, msg: object) -> None:
        if isinstance(msg, (TaskResult, GiveBack)):
            why = self._not_placed_there(link, msg.task, msg.attempt)
            if why is not None:
                await self._refuse_claim(link, type(msg).__name__, why)
                return
        if isinstance(msg, TaskResult):
            key = (msg.task, msg.attempt)
            self._results_in_flight.add(key)
            # Not awaited here: waiting for a replica's ack must not block this link's reader
            # (the replica may be this very worker).
            self._spawn(self._on_result(link, msg))
        elif isinstance(msg, GiveBack):
            self._on_give_back(link, msg)
        elif isinstance(msg, HeartbeatAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            self._reconcile(link, msg)
        elif isinstance(msg, Fenced):
            self._step_down(msg.term)
        elif isinstance(msg, JournalAck):
            if msg.term > self.term:
                self._step_down(msg.term)
            elif msg.term < self.term:
                pass  # an answer to an older term's stream
            elif msg.ok:
                self.replication.acked(link.node, msg.seq, msg.members)
            else:
                self.replication.resync(link.node)

    async def _on_result(self, link: WorkerLink, r: TaskResult) -> None:
        key = (r.task, r.attempt)
        held = self._running.get(key)
        try:
            if r.app != self.app_id or r.task not in self.spec.task_ids:
                log.warning("app %s: dropped a result for %s/%s", self.app_id, r.app, r.task)
                return
            if not self._acting():
                return  # not ours to commit any more; the worker keeps it for the next one
            link.full = is_refusal(r)  # a refusal: its slots hold work we do not know of
            # Shielded: releasing or losing the link must not cancel a commit half done.
            seq = await asyncio.shield(self._verified_commit(r, link.host))
            # Acknowledged only once a write quorum of the replica set holds it (a duplicate:
            # once the journal is, as it may come from an earlier term's journal). Cut off
            # from the set, or stepped down: no acknowledgement, the worker keeps it.
            if not await self.replication.durable(seq or self.seq, self._acting):
                return
            with contextlib.suppress(Exception):
                await link.send(ResultAck(self.app_id, r.task, r.attempt, self.term))
            if seq:
                self._wake.set()
        finally:
            self._results_in_flight.discard(key)
            self._unconfirmed.pop(key, None)
            # The slot counts as busy until the result is committed, so the worker is not
            # released (and its reader cancelled) while the commit is under way.
            if held is not None and self._running.pop(key, None) is not None:
                held[0].used -= held[1]
                self._wake.set()

    async def _on_backend_result(self, r: TaskResult, node: str | None) -> None:
        """A finished attempt from a backend whose middleware ran it (HTCondor, BOINC).
        Returns once it is committed (and durable on the replicas); raises if it was not, so
        the backend keeps it and delivers it again."""
        if r.app != self.app_id or r.task not in self.spec.task_ids:
            log.warning("app %s: dropped a backend result for %s/%s", self.app_id, r.app, r.task)
            return
        if not self._acting():
            raise RuntimeError(f"app {self.app_id} is not coordinated here any more")
        key = (r.task, r.attempt)
        self._results_in_flight.add(key)
        try:
            host = self.worker_hosts.get(node or "", "")
            if node and not host and node in self.links:
                host = self.links[node].host
            seq = await asyncio.shield(self._verified_commit(r, host, node or ""))
            # A duplicate (seq 0) is acknowledged once what the journal holds is durable.
            if not await self.replication.durable(seq or self.seq, self._acting):
                raise RuntimeError(f"{r.task}#{r.attempt} is not durable on the replicas")
            self._wake.set()
        finally:
            self._results_in_flight.discard(key)

    async def _verified_commit(self, r: TaskResult, host: str, worker: str = "") -> int:
        if sha256_hex(r.outputs) != r.outputs_sha256:
            if not self.table.accepts(r.task, r.attempt, None):
                return 0
            return self._record(
                je.Abandoned(r.task, r.attempt, "outputs corrupted in transit", True)
            )
        return await self._commit(r, host, worker)

    async def _commit(self, r: TaskResult, host: str, worker: str = "") -> int:
        """Record an attempt exactly once; its files are in place before the journal says so."""
        done = r.exit_code is not None and (r.exit_code != 0 or not r.error)
        if not self.table.accepts(r.task, r.attempt, r.exit_code if done else None):
            return 0
        if not done and not r.outputs:  # nothing to stage: refused, or failed with no files
            if is_refusal(r):  # never ran: requeued, not counted against the task's retries
                return self._record(je.Abandoned(r.task, r.attempt, f"{host}: {r.error}", False))
            why = r.error or "no exit status"
            return self._record(je.Abandoned(r.task, r.attempt, why, True, r.seconds))
        try:
            await asyncio.to_thread(self.store.stage, r.task, r.attempt, r.outputs)
        except Exception as e:
            log.warning(
                "app %s: unreadable outputs from %s#%d: %s", self.app_id, r.task, r.attempt, e
            )
            self.store.discard(r.task, r.attempt)
            return self._record(je.Abandoned(r.task, r.attempt, f"unreadable outputs: {e}", True))
        if not self.table.accepts(r.task, r.attempt, r.exit_code if done else None):
            self.store.discard(r.task, r.attempt)  # settled while the files were unpacked
            return 0
        self.store.promote(r.task, r.attempt)
        entry: je.Entry
        if done:
            assert r.exit_code is not None
            entry = je.Finished(
                r.task,
                r.attempt,
                r.exit_code,
                r.seconds,
                je.NO_CLOCK,
                self.term,
                worker=worker,
                host=host if worker else "",
            )
            if worker:
                self.worker_hosts[worker] = host
        else:  # timed out, killed, or exit 0 without its declared outputs
            entry = je.Abandoned(r.task, r.attempt, r.error or "no exit status", True, r.seconds)
        return self._record(entry, outputs=r.outputs, host=host)

    def _on_give_back(self, link: WorkerLink, msg: GiveBack) -> None:
        """The worker's owner needs the machine: requeue the attempt without counting it
        against the task's retries, free its slot, and let the worker go once it runs
        nothing more of ours."""
        key = (msg.task, msg.attempt)
        if msg.task in self.spec.task_ids and key not in self._results_in_flight:
            why = f"given back by {link.host}: {msg.reason}"
            self._record(je.Abandoned(msg.task, msg.attempt, why, False))
        held = self._running.pop(key, None)
        if held is not None:
            held[0].used -= held[1]
        self._unconfirmed.pop(key, None)
        log.info("app %s: %s gave back %s#%d", self.app_id, link.host, msg.task, msg.attempt)
        if self.links.get(link.node) is link and not self.table.running_on(link.node):
            del self.links[link.node]
            self._refused[link.node] = time.monotonic()
            self._spawn(self._release(link, "its owner needs the machine"))
        self._wake.set()

    async def _on_lost(self, link: WorkerLink, reason: str) -> None:
        if self.links.get(link.node) is not link:
            return  # released on purpose, or replaced by a newer link
        del self.links[link.node]
        self.replication.drop(link.node)
        self.backend.worker_lost(link.node)
        lost: list[Attempt] = []
        for a in self.table.running_on(link.node):
            key = (a.task, a.attempt)
            if key in self._results_in_flight:
                continue  # its result arrived; the commit decides
            if self._record(je.Abandoned(a.task, a.attempt, f"worker {link.node} lost", False)):
                lost.append(a)
            self._running.pop(key, None)
            self._unconfirmed.pop(key, None)
        log.warning(
            "app %s: lost worker %s (%s); requeued %s",
            self.app_id,
            link.host,
            reason,
            ", ".join(f"{a.task}#{a.attempt}" for a in lost) or "nothing",
        )
        self._refused[link.node] = time.monotonic()
        self._wake.set()
