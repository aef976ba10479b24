"""Resuming after a restart: read the daemon's journal back, resume the apps it coordinated
(unless another machine holds them now), keep ended apps' results, drop replica copies.
An unfinished app signed by an older bjgrid (signature version 1) is marked failed with the
reason ("re-submit the app") instead of being resumed."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from typing import TYPE_CHECKING

from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.signing import signature_problem
from bonjourgrid.app.spec import AppSpec
from bonjourgrid.daemon import app_directory
from bonjourgrid.faulttolerance.journal import AppRow
from bonjourgrid.safepath import under
from bonjourgrid.states.coordinator import COORDINATING_ROLES, CoordinatorRole, Role

if TYPE_CHECKING:
    from bonjourgrid.coordinator.app_coordinator import AppCoordinator
    from bonjourgrid.daemon.node import NodeDaemon

log = logging.getLogger(__name__)


class JournalResume:
    """Resumes the daemon's journaled apps after a restart; holds the apps a private daemon
    resumes only when they are submitted again (``dormant``)."""

    def __init__(self, node: NodeDaemon) -> None:
        self.node = node
        self.dormant: dict[str, AppRow] = {}
        """Journaled apps a private daemon resumes only when they are submitted again."""

    async def load_journal(self) -> None:
        """Read the journal back: ended apps serve their results until ``results_keep``;
        unfinished apps this daemon coordinated are resumed (a private daemon resumes one
        only when it is submitted again); replica copies are dropped (the reservation that
        made this machine a replica died with the old daemon)."""
        try:
            await self._read_journal()
        finally:
            self.node.loaded.set()

    async def _read_journal(self) -> None:
        assert self.node.journal is not None
        now = time.time()
        for row in self.node.journal.apps():
            row = self._fail_if_signed_by_older(row, now)
            role = Role(row.role)
            if role in COORDINATING_ROLES:
                if self.node.volunteer:
                    await self.resume(row)
                else:
                    self.dormant[row.app] = row
            elif role is Role.STANDBY or row.ended is None:
                self.node.journal.forget(row.app)
                shutil.rmtree(under(self.node.paths.apps_dir, row.app), True)
            elif now - row.ended <= self.node.config.results_keep:
                app = self.restore(
                    row, CoordinatorRole.restored(row.app, role, row.term, row.reason)
                )
                app.ended_at = time.monotonic() - (now - row.ended)
                app.done.set()
                self.node.keep(app)
            else:
                self.node.journal.forget(row.app)
                shutil.rmtree(under(self.node.paths.apps_dir, row.app), True)

    def _fail_if_signed_by_older(self, row: AppRow, now: float) -> AppRow:
        """An unfinished app whose signature an older bjgrid made (version 1: bound to no app
        id or CE key) is marked failed with the reason: no volunteer would accept it now, and
        it cannot be re-signed here (the user's key is not the daemon's)."""
        why = signature_problem(row.signature)
        if why is None or Role(row.role) not in COORDINATING_ROLES:
            return row
        assert self.node.journal is not None
        log.warning("app %s cannot be resumed: %s", row.app, why)
        self.node.journal.update_app(row.app, role=Role.FAILED.value, reason=why, ended=now)
        return dataclasses.replace(row, role=Role.FAILED.value, reason=why, ended=now)

    def restore(self, row: AppRow, role: CoordinatorRole) -> AppCoordinator:
        assert self.node.journal is not None
        return self.node.app_object(
            app_id=row.app,
            spec=AppSpec.from_json(row.spec),
            bundle=row.bundle,
            digest=row.digest,
            user=row.user,
            role=role,
            entries=self.node.journal.entries(row.app),
            coordinator=(row.coordinator, row.coordinator_host),
            replicas=row.replicas,
            signature=row.signature,
            signer=row.signer,
            # a journal of an older version has none: an unsigned app gets a new one
            ce_key=CEKey.from_hex(row.ce_key) if row.ce_key else None,
        )

    async def resume(self, row: AppRow) -> AppCoordinator | None:
        """Coordinate a journaled app again with a higher term — unless it moved on (a replica
        took it over, or finished it, while this daemon was down)."""
        if self.node.discovery is not None:
            await self.node.settle()
            found = await app_directory.find_holder(
                row.app, self.node.discovery, self.node.me, self.node.config.ping_timeout
            )
            if found is not None:
                peer, st = found
                if st.complete or (st.coordinating and st.term >= row.term):
                    log.info("app %s: held by %s now; not resumed", row.app, peer.node)
                    assert self.node.journal is not None
                    self.node.journal.update_app(
                        row.app, role=Role.STEPPED_DOWN.value, ended=time.time()
                    )
                    return None
        app = self.restore(row, CoordinatorRole.restored(row.app, Role.STANDBY, row.term))
        log.warning("app %s: resuming from the journal (%d entries)", row.app, app.seq)
        app.take_over()
        self.node.start_app(app)
        return app
