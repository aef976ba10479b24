"""A restarted machine resuming the apps it coordinated, as the daemon does
(daemon/journal_resume.py).

What a restart keeps is what the daemon keeps on disk (faulttolerance/journal.py, SQLite):
for an app it coordinated, the journal, the replica set and the term; for an app that ended
here, its election state (results are kept ``results_keep``). What it loses is what the
daemon keeps in memory or drops when it reads its journal back: its reservation, running
attempts and held results, and every replica copy (with that copy's votes: the daemon drops
``STANDBY`` rows on load).

An app it coordinated is resumed unless it moved on: the machine asks the app's
``_bjg-coord`` record holders and every other daemon (``AppQuery``, ``find_holder``'s
question; here simply everyone at once) and waits ``ping_timeout``; if one answers that the
app is complete, or that it coordinates it with a term at least the journaled one, the app
is left (stepped down). Otherwise it takes over with the next term (``take_over``: one above
the journaled term) from its own journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.control.messages import AppQuery, AppState
from bonjourgrid.faulttolerance.entries import Entry
from bonjourgrid.faulttolerance.quorum import Members, Voter
from bonjourgrid.states.coordinator import CoordinatorLost, CoordinatorRole, Role

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode


@dataclass
class Journaled:
    """One app as the daemon's journal holds it for a coordinator."""

    app: str
    spec: AppSpec
    term: int
    role: str
    entries: list[Entry]
    members: Members
    answers: list[AppState] = field(default_factory=list)


class Resume:
    def __init__(self, node: SimNode, row: Journaled) -> None:
        self.node = node
        self.row = row
        me = node.id
        for n in sorted(node.world.nodes):  # the record holders, then every daemon
            if n != me:
                node.send(n, AppQuery(row.app))
        node.later(node.world.config.ping_timeout, self._decide)

    def state(self) -> AppState:
        """The answer to an ``AppQuery`` meanwhile: the journaled term and role."""
        return AppState(self.row.app, self.row.term, self.row.role, False, False)

    def on_answer(self, msg: AppState) -> None:
        self.row.answers.append(msg)

    def _decide(self) -> None:
        node, row = self.node, self.row
        if node.resuming.get(row.app) is not self:
            return
        del node.resuming[row.app]
        moved = any(a.complete or (a.coordinating and a.term >= row.term) for a in row.answers)
        if moved:
            node.checks.log(f"{row.app} not resumed by {node.id}: held elsewhere")
            node.remember(row.app, Voter(row.term, node.id, row.term), durable=True)
            return
        role = CoordinatorRole(row.app, role=Role.STANDBY, term=row.term)
        role.handle(CoordinatorLost())  # take_over: the next term, from its own journal
        node.checks.log(f"{row.app} resumed by {node.id} with term {role.term}")
        node.coords[row.app] = node.world.coordinator(
            node, row.app, row.spec, role, journal=row.entries, members=row.members
        )
