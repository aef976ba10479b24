"""Takeover reconciliation: what a new coordinator believes of the old one's workers.

An engine built with role TAKING_OVER re-homes the old workers (``Recruit(rehome=True)``).
With core placement every running attempt in the journal is *unconfirmed*: it is
**adopted** if its worker says it runs it (``HeartbeatAck.running``) or sends its result;
it is **abandoned** (requeued, not a failure) when its worker says it does not, is lost, or
has not confirmed within ``rehome_grace`` after the re-homes were answered. An attempt the
journal lacks — the *next* attempt of a ready task, whose ``Started`` was lost with the old
coordinator — is adopted (journaled) when a worker this takeover re-homed reports it running
or sends its result (no other worker is believed), so no attempt number is handed out twice
and no result is dropped as a duplicate. With middleware placement every running attempt is
abandoned at once (the old head's queue is gone).
"""

from __future__ import annotations

from collections.abc import Sequence

from bonjourgrid.control.messages import HeartbeatAck
from bonjourgrid.engine.app_core import AppCore
from bonjourgrid.engine.app_events import Recruit
from bonjourgrid.engine.matchmaking import Offer
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.states.taskstate import TaskState


class Takeover:
    """One takeover's progress (the engine makes one; it stays idle unless ``step`` runs)."""

    def __init__(self, core: AppCore) -> None:
        self._core = core
        self.started = False
        self.answers: set[str] = set()
        """Re-homes not answered yet (the grace starts once all are)."""
        self.deadline: float | None = None
        self.rehomed: set[str] = set()
        """Every worker re-homed by this takeover (the only ones whose unknown attempts are
        adopted: any other linked worker could claim a ready task it was never given)."""

    def step(self, now: float, offers: Sequence[Offer]) -> bool:
        """Re-home, then wait for the answers and the grace; True once the takeover is done
        (every unconfirmed attempt left is abandoned)."""
        core = self._core
        ledger = core.ledger
        if not self.started:
            self.started = True
            running = core.table.running()
            if core.placement.adopts_on_takeover:
                ledger.unconfirmed = {(a.task, a.attempt): a.worker for a in running}
            else:
                for a in running:
                    why = "its CE head moved to the new coordinator"
                    core.record(je.Abandoned(a.task, a.attempt, why, False))
            mine = {a.worker for a in running}
            for o in offers:
                if o.node in mine or (o.state == "worker" and o.app == core.app):
                    self.answers.add(o.node)
                    self.rehomed.add(o.node)
                    ledger.asking(o.node)
                    core.emit(Recruit(o, core.term, rehome=True))
            core.note(f"re-homing {len(self.answers)} workers, {len(running)} attempts")
        if self.answers:
            return False
        if self.deadline is None:
            self.deadline = now + core.timing.rehome_grace
        if ledger.unconfirmed and now < self.deadline:
            return False
        for (task, attempt), node in list(ledger.unconfirmed.items()):
            if (task, attempt) in ledger.in_flight:
                continue
            core.record(je.Abandoned(task, attempt, f"worker {node} lost in the takeover", False))
        ledger.unconfirmed.clear()
        return True

    def answered(self, node: str) -> None:
        self.answers.discard(node)

    def adopt_unknown(self, worker: str, task: str, attempt: int) -> bool:
        """A re-homed worker runs (or finished) the *next* attempt of a ready task: its
        ``Started`` entry was lost with the old coordinator (entries stream after they are
        journaled). The worker's word is the only record of that attempt: journal it, so the
        number is never handed out twice and the result is not dropped as a duplicate."""
        core = self._core
        if task not in core.spec.task_ids or not core.acting():
            return False
        if worker not in self.rehomed:
            return False  # only a worker of the old coordinator, re-homed here, is believed
        rec = core.table.record(task)
        if rec.state is not TaskState.READY or attempt != rec.attempts + 1:
            return False
        host = core.ledger.workers[worker].host
        core.record(je.Started(task, attempt, worker, host, 0.0), host=host)
        core.ledger.start((task, attempt), worker, core.spec.task(task).requirements.cpus)
        core.note(f"adopted {task}#{attempt} from {worker}: its start was not in the journal")
        return True

    def reconcile(self, worker: str, ack: HeartbeatAck) -> None:
        """Adopt the unconfirmed attempts ``worker`` runs; abandon those it does not."""
        core = self._core
        ledger = core.ledger
        if worker in ledger.workers and ack.term == core.term:
            for item in ack.running:
                task, _, n = item.rpartition("#")
                if n.isdigit():
                    self.adopt_unknown(worker, task, int(n))
        running = set(ack.running)
        for key, node in list(ledger.unconfirmed.items()):
            if node != worker:
                continue
            task, attempt = key
            if f"{task}#{attempt}" in running:
                ledger.confirm(key, worker, core.spec.task(task).requirements.cpus)
                continue
            ledger.unconfirmed.pop(key, None)
            if key not in ledger.in_flight and core.table.accepts(task, attempt, None):
                why = f"worker {worker} no longer runs it"
                core.record(je.Abandoned(task, attempt, why, False))
