"""This machine as a replica of an app's journal: open a copy from a coordinator's snapshot,
follow its stream, keep the results when the app ends, drop a copy a newer term made stale.

A snapshot carries the app's CE key (``ReplicaOpen.ce_secret``): a copy is refused without
one, or with one that is not the key the app's signature names — an elected replica could not
prove to the workers that it coordinates the app."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from typing import TYPE_CHECKING

from bonjourgrid.app.ce_key import CEKey, CEKeyError
from bonjourgrid.app.signing import AppSignature, signature_problem
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import AppEnded, JournalAck, JournalAppend, ReplicaOpen, Replicas
from bonjourgrid.faulttolerance.quorum import Voter
from bonjourgrid.safepath import under
from bonjourgrid.states.coordinator import CoordinatorRole, Role

if TYPE_CHECKING:
    from bonjourgrid.daemon.node import NodeDaemon

log = logging.getLogger(__name__)


class ReplicaHandlers:
    """What a coordinator sends this machine as one of its app's replicas."""

    def __init__(self, node: NodeDaemon) -> None:
        self.node = node

    async def on_replica(self, msg: object) -> object | None:
        if isinstance(msg, ReplicaOpen):
            return await self._open_replica(msg)
        app = self.node.apps.get(getattr(msg, "app", ""))
        if isinstance(msg, (JournalAppend, Replicas)):
            # faulttolerance/quorum.py: a lower term, or a term this replica voted for
            # someone else in, is refused with the higher term (which fences the sender).
            if app is None or app.role.role is not Role.STANDBY:
                return JournalAck(msg.app, app.term if app else 0, 0, False)
            if isinstance(msg, Replicas):
                return app.follow_members(msg)
            return app.follow_append(msg)
        if isinstance(msg, AppEnded) and app is not None and app.role.role is Role.STANDBY:
            if msg.term != app.term:
                log.info("app %s ended under term %d; stale copy dropped", msg.app, msg.term)
                self.node.forget_app(app)
                return None
            try:
                app.ended_upstream(msg.outcome)
            except ValueError:
                log.warning("app %s: bad outcome %r", msg.app, msg.outcome)
                return None
            assert self.node.journal is not None
            self.node.journal.update_app(msg.app, role=app.role.role.value, ended=time.time())
            log.info("app %s ended (%s); its results are kept here", msg.app, msg.outcome)
        return None

    def on_rehomed(self, app_id: str, term: int) -> None:
        """A coordinator with a higher term re-homed this worker: a replica copy of an older
        term is stale (the new coordinator sends a fresh snapshot if it wants this machine)."""
        app = self.node.apps.get(app_id)
        if app is not None and app.role.role is Role.STANDBY and app.term < term:
            log.info(
                "app %s: term %d took over; stale copy (term %d) dropped", app_id, term, app.term
            )
            self.node.forget_app(app)

    async def _open_replica(self, msg: ReplicaOpen) -> JournalAck:
        old = self.node.apps.get(msg.app)
        if old is not None and old.role.coordinating:
            if old.term > msg.term:
                return JournalAck(msg.app, old.term, 0, False)  # fences the sender
            old.yield_to(msg.term)
        voter = old.voter if old is not None and old.role.role is Role.STANDBY else Voter()
        if not voter.accepts(msg.term, msg.coordinator):
            return JournalAck(msg.app, max(voter.term, old.term if old else 0), 0, False)
        assert self.node.journal is not None
        try:
            ce_key = CEKey.from_hex(msg.ce_secret)
        except CEKeyError as e:
            log.warning("app %s: refused a replica snapshot with no usable CE key: %s", msg.app, e)
            return JournalAck(msg.app, msg.term, 0, False)
        why = signature_problem(msg.signature)
        signed = AppSignature.decode(msg.signature) if why is None and msg.signature else None
        if signed is not None and signed.ce_key != ce_key.public:
            why = "its CE key is not the one the app's signature names"
        if why:
            log.warning("app %s: refused a replica snapshot: %s", msg.app, why)
            return JournalAck(msg.app, msg.term, 0, False)
        entries = [e for e in msg.entries.split("\n") if e]
        self.node.journal.add_app(
            app=msg.app,
            spec=msg.spec,
            bundle=msg.bundle,
            digest=msg.digest,
            user=msg.user,
            term=msg.term,
            role=Role.STANDBY.value,
            coordinator=msg.coordinator,
            coordinator_host=msg.coordinator_host,
            replicas=msg.replicas,
            entries=entries,
            signature=msg.signature,
            signer=msg.signer,
            ce_key=ce_key.hex(),
        )
        store = under(self.node.paths.apps_dir, msg.app)
        await asyncio.to_thread(shutil.rmtree, store, True)
        if msg.outputs:
            from bonjourgrid.app.bundle import unpack_files  # loaded with the first replica

            (store / "tasks").mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(unpack_files, msg.outputs, store / "tasks")
        app = self.node.app_object(
            app_id=msg.app,
            spec=AppSpec.from_json(msg.spec),
            bundle=msg.bundle,
            digest=msg.digest,
            user=msg.user,
            role=CoordinatorRole(msg.app, role=Role.STANDBY, term=msg.term),
            entries=entries,
            coordinator=(msg.coordinator, msg.coordinator_host),
            replicas=msg.replicas,
            signature=msg.signature,
            signer=msg.signer,
            ce_key=ce_key,
        )
        app.persist_vote(voter.follow(msg.term, msg.coordinator))
        self.node.keep(app)
        self.node.kick()
        log.info(
            "app %s: keeping its journal for %s (term %d)", msg.app, msg.coordinator_host, msg.term
        )
        return JournalAck(msg.app, msg.term, msg.seq, True)
