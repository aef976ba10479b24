"""The daemon's answers to the CLI over its local socket: submit, watch, results, status,
apps, cancel — each a handler of one request kind (daemon/local_messages.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bonjourgrid.app.ce_key import CEKey, CEKeyError
from bonjourgrid.app.fields import AppError
from bonjourgrid.app.request_proof import ProofError, RequestProof
from bonjourgrid.app.signing import AppSignature, SigningError
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.local_channel import LocalChannel
from bonjourgrid.control.messages import AppResults, Error
from bonjourgrid.coordinator.matchmaking import Offer, fit_rows
from bonjourgrid.daemon import app_directory
from bonjourgrid.daemon import local_messages as lm
from bonjourgrid.daemon.status import machine_rows
from bonjourgrid.policy import PolicyDriver, pause

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.daemon.node import NodeDaemon

log = logging.getLogger(__name__)


class LocalRequests:
    """The daemon's answers to the CLI over its local socket: one handler per request. A
    request about an app held elsewhere carries the user's request proof on to the holder
    (app/request_proof.py)."""

    def __init__(self, node: NodeDaemon) -> None:
        self.node = node

    async def on_local(self, ch: LocalChannel) -> None:
        if ch.peer_uid not in (0, os.getuid()):
            log.warning("refused local client uid %d", ch.peer_uid)
            await ch.send(lm.Failure(2, "this daemon belongs to another user"))
            return
        try:
            req = await ch.recv()
        except ChannelClosed:
            return  # a client checking that the socket answers
        handlers: dict[type, Callable[[LocalChannel, Any], Awaitable[None]]] = {
            lm.Submit: self._local_submit,
            lm.Watch: self._local_watch,
            lm.FetchResults: self._local_results,
            lm.StatusRequest: self._local_status,
            lm.AppsRequest: self._local_apps,
            lm.CancelApp: self._local_cancel,
            lm.DryRun: self._local_dry_run,
            lm.Pause: self._local_pause,
        }
        handler = handlers.get(type(req))
        if handler is None:
            await ch.send(lm.Failure(2, f"unknown request {type(req).__name__}"))
            return
        await handler(ch, req)

    async def _local_submit(self, ch: LocalChannel, req: lm.Submit) -> None:
        await self.node.loaded.wait()
        if not req.fresh:
            # Re-attach to the same app.json while it runs; once ended, a submit runs it anew.
            for app in self.node.apps.values():
                if app.digest == req.digest and app.role.coordinating:
                    await ch.send(lm.Submitted(app.app_id, resumed=True))
                    return
            dormant = self.node.resumer.dormant
            for row in list(dormant.values()):
                if row.digest == req.digest:
                    del dormant[row.app]
                    resumed = await self.node.resumer.resume(row)
                    if resumed is not None:
                        await ch.send(lm.Submitted(resumed.app_id, resumed=True))
                        return
        spec = AppSpec.from_json(req.spec)
        ce_key, why = _submitted_ce_key(req)
        if ce_key is None:
            await ch.send(lm.Failure(2, why))
            return
        try:
            app = self.node.submit(
                spec,
                req.bundle,
                digest=req.digest,
                user=req.user,
                signature=req.signature,
                signer=req.signer,
                app_id=req.app,
                ce_key=ce_key,
            )
        except ValueError as e:  # the app id is taken: the CLI signs anew with another
            await ch.send(lm.Failure(2, str(e)))
            return
        await ch.send(lm.Submitted(app.app_id, resumed=False))

    def _app(self, app_id: str) -> AppCoordinator | None:
        return self.node.apps.get(app_id)

    async def _local_watch(self, ch: LocalChannel, req: lm.Watch) -> None:
        app = self._app(req.app)
        if app is None:
            await ch.send(lm.Failure(4, f"no app {req.app} on this machine"))
            return
        q = app.subscribe()
        try:
            while True:
                p = await q.get()
                await ch.send(lm.Progress(**vars(p)))  # the coordinator's view, as a message
                if p.ended:
                    return
        finally:
            app.unsubscribe(q)

    async def _local_results(self, ch: LocalChannel, req: lm.FetchResults) -> None:
        """Results from here when this daemon coordinates the app or has it complete;
        otherwise from the holders on the LAN (a takeover moved it), each answer checked
        against its manifest: the first complete one that adds up wins, not the highest
        claimed term (app_directory.collect)."""
        app = self._app(req.app)
        reply: AppResults | Error | None = None
        holder = self.node.host.node_id
        refusals: list[str] = []
        if app is None or not (app.role.coordinating or app.complete):
            problem = self._proof_problem(req.proof)
            if problem:
                await ch.send(lm.Failure(2, problem))
                return
            got = await self._remote_results(req.app, req.proof)
            reply, holder, refusals = got.best, got.holder, got.refusals
        if reply is None and app is not None:
            reply = await self.node.app_requests.app_results(req.app)
            holder = self.node.host.node_id
        if not isinstance(reply, AppResults):
            if refusals:
                log.warning("results of app %s: %s", req.app, "; ".join(refusals))
                why = "; ".join(refusals)
                await ch.send(lm.Failure(4, f"no holder gave app {req.app} to you: {why}"))
                return
            await ch.send(lm.Failure(4, f"no machine holds app {req.app}"))
            return
        await ch.send(
            lm.Results(
                app=reply.app,
                name=reply.name,
                complete=reply.complete,
                outcome=reply.outcome,
                results=reply.results,
                outputs=reply.outputs,
                manifest=reply.manifest,
                manifest_signature=reply.manifest_signature,
                holder=holder,
            )
        )

    def _proof_problem(self, proof: str) -> str | None:
        """A proof the CLI made for another daemon would be refused by every holder: say so
        here, where the cause is plain."""
        if not proof:
            return None
        try:
            node = RequestProof.decode(proof).node
        except ProofError as e:
            return str(e)
        me = self.node.host.node_id
        if node != me:
            return f"the request proof names node {node}, but this daemon is {me}"
        return None

    async def _remote_results(self, app_id: str, proof: str) -> app_directory.Collected:
        if self.node.discovery is None:
            return app_directory.Collected()
        await self.node.settle()
        timeout = max(self.node.config.ping_timeout, self.node.config.connect_timeout)
        found = await app_directory.holders(app_id, self.node.discovery, self.node.me, timeout)
        ce = self._known_ce_key(app_id)
        return await app_directory.collect(app_id, found, self.node.me, 60.0, proof, ce)

    def _known_ce_key(self, app_id: str) -> bytes | None:
        """The app's CE public key, from its signature, when this daemon holds or held the
        app (its journal keeps the signature); None otherwise."""
        app = self._app(app_id)
        journal = self.node.journal
        row = journal.app(app_id) if app is None and journal is not None else None
        text = app.signature if app is not None else row.signature if row is not None else ""
        if not text:
            return None
        try:
            return AppSignature.decode(text).ce_key or None
        except SigningError:
            return None

    async def _local_status(self, ch: LocalChannel, req: lm.StatusRequest) -> None:
        deadline = time.monotonic() + max(0.1, req.timeout)
        if self.node.discovery is not None:
            settle = self.node.started_at + self.node.config.browse_settle - time.monotonic()
            if settle > 0:
                await asyncio.sleep(min(settle, max(0.0, deadline - time.monotonic() - 0.3)))
            machines = self.node.discovery.machines()
            coords = self.node.discovery.coordinators()
        else:
            machines, coords = [], []
        budget = min(self.node.config.ping_timeout, max(0.05, deadline - time.monotonic() - 0.05))
        rows = await machine_rows(
            machines, coords, key=self.node.key, node=self.node.me.node_key, timeout=budget
        )
        await ch.send(lm.StatusReply(list(rows)))

    async def _local_apps(self, ch: LocalChannel, req: lm.AppsRequest) -> None:
        seen: dict[str, dict[str, object]] = {}
        if self.node.discovery is not None:
            await self.node.settle()
            for c in self.node.discovery.coordinators():
                if c.app in seen and int(seen[c.app]["term"]) >= c.txt.term:  # type: ignore[call-overload]
                    continue
                seen[c.app] = {
                    "app": c.app,
                    "name": c.txt.name,
                    "user": c.txt.user,
                    "coordinator": c.host,
                    "node": c.node,
                    "term": c.txt.term,
                    "state": "running",
                }
        created = {r.app: r.created for r in self.node.journal.apps()} if self.node.journal else {}
        now = time.time()
        for app in self.node.apps.values():
            if not (app.role.coordinating or app.complete) and app.app_id in seen:
                continue  # a replica's copy; the coordinator's record says more
            p = app.progress()
            seen[app.app_id] = {
                "app": app.app_id,
                "name": app.spec.name,
                "user": app.user,
                "coordinator": app.coordinator[1],
                "node": app.coordinator[0],
                "term": app.term,
                "state": p.outcome or p.role,
                "counts": p.counts,
                "workers": p.workers,
                **app_counts(p.counts),
                "age": round(now - created[app.app_id], 1) if app.app_id in created else None,
                "waiting_reason": p.waiting,
            }
        await ch.send(lm.AppsReply(list(seen.values())))

    async def _local_dry_run(self, ch: LocalChannel, req: lm.DryRun) -> None:
        """Match an app against the volunteers seen, recruiting nothing (submit --dry-run)."""
        if self.node.discovery is not None:
            await self.node.settle()
        reply, why = _dry_run_rows(self.node.advertising.offers(), req.spec)
        await ch.send(reply if reply is not None else lm.Failure(2, why))

    async def _local_pause(self, ch: LocalChannel, req: lm.Pause) -> None:
        """``bjgrid pause`` / ``resume``: the owner's manual hold, an input of the owner
        policy (policy/pause.py keeps it across restarts). Only this socket's local user
        gets here (``_on_local``); no control message pauses a machine."""
        driver: PolicyDriver | None = self.node.policy
        if driver is None:
            await ch.send(lm.Failure(2, "this daemon does not volunteer (see bjgrid join)"))
            return
        try:
            pause.record(self.node.paths.state_dir, req.paused)
        except OSError as e:
            await ch.send(lm.Failure(3, f"cannot record the pause: {e}"))
            return
        state = await driver.set_paused(req.paused)
        tasks = len(self.node.agent.worker.running()) if self.node.agent.worker is not None else 0
        reply = lm.PauseReply(req.paused, state.value, tasks, driver.config.resume_after)
        await ch.send(reply)

    async def _local_cancel(self, ch: LocalChannel, req: lm.CancelApp) -> None:
        app = self._app(req.app)
        if app is not None and app.role.coordinating:
            await app.cancel()
            await ch.send(lm.Ok(f"app {req.app} cancelled"))
            return
        if self.node.discovery is not None:
            await self.node.settle()
            peers = self.node.advertising.rivals(req.app)
            why = "no coordinator record"
            problem = self._proof_problem(req.proof)
            if problem:
                await ch.send(lm.Failure(2, problem))
                return
            for peer in sorted(peers, key=lambda p: -p.term):
                why = await app_directory.cancel(
                    peer,
                    req.app,
                    self.node.me,
                    self.node.config.connect_timeout,
                    "cancelled by the user",
                    req.proof,
                )
                if not why:
                    await ch.send(lm.Ok(f"app {req.app} cancelled"))
                    return
            if peers or app is not None:
                await ch.send(lm.Failure(4, f"app {req.app} could not be cancelled: {why}"))
                return
        await ch.send(lm.Failure(4, f"no machine coordinates app {req.app}"))


def app_counts(counts: dict[str, object]) -> dict[str, int]:
    """done / running / waiting / failed / cancelled / skipped of a task-state count table
    (waiting = pending + ready: what people think of as not started yet)."""

    def n(state: str) -> int:
        v = counts.get(state, 0)
        return v if isinstance(v, int) else 0

    return {
        "done": n("done"),
        "running": n("running"),
        "waiting": n("pending") + n("ready"),
        "failed": n("failed"),
        "cancelled": n("cancelled"),
        "skipped": n("skipped"),
    }


def _dry_run_rows(
    offers: Sequence[Offer], data: dict[str, object]
) -> tuple[lm.DryRunReply | None, str]:
    try:
        spec = AppSpec.from_json(data, source="<dry run>")
    except AppError as e:
        return None, f"bad app: {e}"
    tasks = [(t.id, t.requirements) for t in spec.tasks]
    rows: list[object] = list(fit_rows(offers, tasks, spec.backend, app=""))
    return lm.DryRunReply(len(offers), rows), ""


def _submitted_ce_key(req: lm.Submit) -> tuple[CEKey | None, str]:
    """The CE key a submit brings (made anew for an unsigned app that brings none), or None
    and why it cannot be used: a signed app must bring the key its signature names."""
    try:
        key = CEKey.from_hex(req.ce_secret) if req.ce_secret else None
    except CEKeyError as e:
        return None, f"bad CE key: {e}"
    if not req.signature:
        return key or CEKey.generate(), ""
    try:
        sig = AppSignature.decode(req.signature)
    except SigningError as e:
        return None, f"bad signature: {e}"
    if sig.app != req.app:
        return None, f"the signature is for app {sig.app!r}, not {req.app!r}"
    if key is None or key.public != sig.ce_key:
        return None, "the CE key is not the one the signature names"
    return key, ""
