"""The daemon's answers to other daemons about the apps it holds: ``AppQuery``, ``FetchApp``
and ``CancelApp`` (as coordinator or replica).

Who may ask what:

- ``AppQuery`` (term, role, complete): anyone holding the grid key — the same facts the app's
  ``_bjg-coord`` record shows the LAN; it is how an asker finds holders.
- ``FetchApp`` and ``CancelApp`` of a **signed** app: only its submitter, shown by a request
  proof (app/request_proof.py) made with the key that signed the app, naming the node that
  carries it (the channel's authenticated peer), fresh and never seen before. Anything else is
  answered ``Error("not the submitter of app ...: why")`` and logged.
- the same of an **unsigned** app: anyone holding the grid key (as before signatures; an
  unsigned app is its lab's, not one user's).

Each answer to ``FetchApp`` carries its result manifest (coordinator/manifest.py), signed by
the app's CE key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from bonjourgrid.app.request_proof import NonceCache, ProofRefused, verify_proof
from bonjourgrid.app.signing import AppSignature, SigningError
from bonjourgrid.control.channel import Channel
from bonjourgrid.control.messages import (
    AppQuery,
    AppResults,
    AppState,
    CancelApp,
    Error,
    FetchApp,
)

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.daemon.node import NodeDaemon

log = logging.getLogger(__name__)


def submitter_refusal(
    app: AppCoordinator, action: str, proof: str, peer: str, seen: NonceCache, now: float
) -> str | None:
    """Why ``peer`` may not have ``action`` on ``app`` with ``proof`` (None: it may)."""
    if not app.signature:
        return None
    try:
        submitter = AppSignature.decode(app.signature).public_key
    except SigningError as e:
        return f"not the submitter of app {app.app_id}: its signature is unreadable here ({e})"
    try:
        verify_proof(
            proof, submitter=submitter, action=action, app=app.app_id, node=peer, now=now, seen=seen
        )
    except ProofRefused as e:
        return f"not the submitter of app {app.app_id}: {e.reason}"
    return None


class AppRequests:
    """The daemon's answers to other daemons about the apps it holds."""

    def __init__(self, node: NodeDaemon) -> None:
        self.node = node
        self.proof_nonces = NonceCache()
        """Nonces of request proofs this daemon accepted (one cache for all its apps)."""

    def _refusal(self, ch: Channel, app: AppCoordinator, action: str, proof: str) -> str | None:
        why = submitter_refusal(app, action, proof, ch.peer_node, self.proof_nonces, time.time())
        if why is not None:
            log.warning(
                "refused %s of app %s to node %s at %s: %s",
                action,
                app.app_id,
                ch.peer_node,
                ch.peer_address,
                why,
            )
        return why

    async def answer_query(self, ch: Channel, msg: AppQuery) -> None:
        app = self.node.apps.get(msg.app)
        await ch.send(app.state() if app else AppState(msg.app, 0, "", False, False))

    async def answer_fetch(self, ch: Channel, msg: FetchApp) -> None:
        app = self.node.apps.get(msg.app)
        if app is None:
            await ch.send(Error(f"no app {msg.app} here"))
            return
        why = self._refusal(ch, app, "results", msg.proof)
        await ch.send(Error(why) if why else await self.app_results(msg.app))

    async def answer_cancel(self, ch: Channel, msg: CancelApp) -> None:
        app = self.node.apps.get(msg.app)
        if app is None or not app.role.coordinating:
            await ch.send(Error(f"app {msg.app} is not coordinated here"))
            return
        why = self._refusal(ch, app, "cancel", msg.proof)
        if why:
            await ch.send(Error(why))
            return
        log.info("app %s cancelled by its submitter through node %s", app.app_id, ch.peer_node)
        await app.cancel(msg.reason)
        await ch.send(app.state())

    async def app_results(self, app_id: str) -> AppResults | Error:
        """This daemon's copy of ``app_id``'s results, with its manifest."""
        from bonjourgrid.coordinator import manifest  # loaded when results are first asked for

        app = self.node.apps.get(app_id)
        if app is None:
            return Error(f"no app {app_id} here")
        # The table first, then the files: files are in place before the table says a task
        # is done, so this order never reports a task whose files the tar would miss.
        complete, outcome, results = app.complete, app.outcome, app.results()
        outcome = outcome if complete else ""
        outputs = await asyncio.to_thread(app.store.export)
        files = await asyncio.to_thread(manifest.digests, outputs)
        doc = manifest.make_manifest(
            app.app_id, app.term, complete=complete, outcome=outcome, results=results, files=files
        )
        return AppResults(
            app=app.app_id,
            name=app.spec.name,
            term=app.term,
            complete=complete,
            outcome=outcome,
            results=results,
            outputs=outputs,
            manifest=doc,
            manifest_signature=manifest.sign_manifest(app.ce_key.seed, doc),
        )
