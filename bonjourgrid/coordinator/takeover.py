"""Taking an app over, and stepping down: the coordinator side of a change of term.

An elected replica (or a restarted coordinator) claims a higher term, re-homes the old
workers and reconciles what they say they run with what the journal says; a coordinator
that sees a higher term for its app — from a worker, a replica, a rival record or a member
it probes — steps down."""

from __future__ import annotations

import asyncio
import logging
import time

from bonjourgrid.control.messages import HeartbeatAck
from bonjourgrid.coordinator.app_coordinator_base import AppCoordinatorBase
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.coordinator.peers import Peer, query_app
from bonjourgrid.coordinator.worker_link import WorkerLink
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.quorum import Voter
from bonjourgrid.states.coordinator import CoordinatorLost, Role, TakeoverDone, TermSeen

log = logging.getLogger(__name__)


class Takeover(AppCoordinatorBase):
    """The takeover and step-down part of ``AppCoordinator`` (a mixin)."""

    def take_over(self, term: int = 0) -> None:
        """An elected replica claims the ``term`` it won (a restarted coordinator: the next
        term it has not voted in); ``run`` follows. The replica set is the one this node
        knew: results are committed by its write quorums (faulttolerance/quorum.py)."""
        term = term or max(self.term, self.voter.voted) + 1
        if term - 1 > self.term:
            self.role.handle(TermSeen(term - 1))
        self.role.handle(CoordinatorLost())
        self.voter = Voter(self.term, self.me.node, max(self.term, self.voter.voted))
        self.journal_term = self.term
        self.coordinator = (self.me.node, self.me.host)
        self.replication.adopt(self.members)
        self.journal.update_app(
            self.app_id,
            term=self.term,
            role=self.role.role.value,
            coordinator=self.me.node,
            coordinator_host=self.me.host,
            voted=self.voter.voted,
            leader=self.voter.leader,
            journal_term=self.journal_term,
        )
        log.warning("app %s: taking over as coordinator with term %d", self.app_id, self.term)

    async def _probe_member(self, node: str) -> None:
        """A member of the replica set this coordinator does not reach: ask it what it holds.
        A higher term there: another coordinator was elected, step down. Nothing: it
        restarted, and counts for its own removal from the set."""
        offer = next((o for o in self._offers() if o.node == node), None)
        if offer is None:
            return
        peer = Peer(node, offer.addresses, offer.port, 0)
        st = await query_app(peer, self.app_id, self.me, self.config.ping_timeout)
        if st is None or not self._acting():
            return
        if st.term > self.term:
            self._step_down(st.term)
        elif not st.role:
            self.replication.holds_nothing(node)

    async def _rehome(self) -> None:
        """Reserve the app's old workers again with our (higher) term; reconcile their attempts.

        A re-homed worker first sends the results it holds, then acknowledges our heartbeat
        with what it runs (HeartbeatAck.running); ``_reconcile`` uses that. Attempts that no
        worker claims within ``rehome_grace`` are requeued as lost.
        """
        running = self.table.running()
        mine = {a.worker for a in running}
        offers = [
            o
            for o in self._offers()
            if o.node in mine or (o.state == "worker" and self._serves_us(o))
        ]
        log.info(
            "app %s: re-homing %d workers, %d attempts to reconcile",
            self.app_id,
            len(offers),
            len(running),
        )
        await asyncio.gather(*(self._recruit(o) for o in offers))
        deadline = time.monotonic() + self.config.rehome_grace
        while self._unconfirmed and time.monotonic() < deadline and self._acting():
            await asyncio.sleep(0.05)
        for (task, attempt), node in list(self._unconfirmed.items()):
            if (task, attempt) in self._results_in_flight:
                continue
            self._unconfirmed.pop((task, attempt), None)
            self._record(je.Abandoned(task, attempt, f"worker {node} lost in the takeover", False))
        self._unconfirmed.clear()
        if self.role.role is Role.TAKING_OVER:
            self.role.handle(TakeoverDone())
            self._save_role()
        self._wake.set()

    def _serves_us(self, offer: Offer) -> bool:
        """A worker advertising this app (its TXT names the app it serves)."""
        return offer.app == self.app_id

    def _reconcile(self, link: WorkerLink, ack: HeartbeatAck) -> None:
        if not self._unconfirmed:
            return
        running = set(ack.running)
        for key, node in list(self._unconfirmed.items()):
            if node != link.node:
                continue
            task, attempt = key
            del self._unconfirmed[key]
            if f"{task}#{attempt}" in running:
                cpus = self.spec.task(task).requirements.cpus
                link.used += cpus
                self._running[key] = (link, cpus)
            elif key not in self._results_in_flight and self.table.accepts(task, attempt, None):
                self._record(
                    je.Abandoned(task, attempt, f"worker {link.host} no longer runs it", False)
                )
        self._wake.set()

    async def _check_rivals(self) -> None:
        """A coordinator record for this app from another node with a higher term (mDNS,
        informative): ask that node over the control channel; if it coordinates with a
        higher term, step down."""
        for peer in self._rivals():
            if peer.node == self.me.node or peer.term <= self.term:
                continue
            state = await query_app(peer, self.app_id, self.me, self.config.ping_timeout)
            if state is not None and state.coordinating and state.term > self.term:
                self._step_down(state.term)
                return

    def _step_down(self, term: int) -> None:
        if self.role.ended:
            return
        self.role.handle(TermSeen(term))
        if self.role.role is Role.STEPPED_DOWN:
            log.warning(
                "app %s: term %d coordinates it elsewhere; stepping down", self.app_id, term
            )
            self.journal.update_app(
                self.app_id, term=term, role=self.role.role.value, ended=time.time()
            )
            self._wake.set()
