"""Everything one simulated run shares: clock, seeded randomness, network, directory, checks."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.config import Config
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.engine.policy import Quorum
from bonjourgrid.sim.checks import Checks
from bonjourgrid.sim.clock import VirtualClock
from bonjourgrid.sim.directory import Directory
from bonjourgrid.sim.network import Faults, Network
from bonjourgrid.sim.node import SimNode
from bonjourgrid.sim.resume import Journaled, Resume
from bonjourgrid.sim.workload import Workload
from bonjourgrid.states.coordinator import CoordinatorRole

if TYPE_CHECKING:
    from bonjourgrid.sim.coordinator import CoordinatorSide


class World:
    def __init__(
        self,
        seed: int,
        config: Config,
        faults: Faults,
        workload: Workload,
        quorum: Quorum | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.net = Network(self.clock, self.rng, faults)
        self.directory = Directory()
        self.checks = Checks(self.clock)
        self.config = config
        self.workload = workload
        self.nodes: dict[str, SimNode] = {}
        self.quorum = quorum
        """The commit rule every coordinator engine is given (None: the product's)."""
        self.elections = True
        """Replicas take over only when elected (False: the naive rule, no votes asked)."""

    def add_node(self, offer: Offer) -> SimNode:
        node = SimNode(self, offer)
        self.nodes[offer.node] = node
        return node

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.up:
            node.crash()
            self.checks.log(f"crash {node_id}")

    def restart(self, node_id: str) -> SimNode:
        """A crashed machine comes back as an idle volunteer with what the daemon keeps on
        disk: the apps it coordinated (resumed, sim/resume.py) and the election state of
        apps that ended here; its memory (reservation, tasks, replica copies) is gone."""
        old = self.nodes[node_id]
        if old.up:
            return old
        self.checks.log(f"restart {node_id}")
        node = self.add_node(old.offer)
        for app in sorted(old.durable):
            node.remember(app, old.known[app], durable=True, complete=app in old.complete)
        for app, r in old.replicas.items():
            if r.ended:  # an ended copy is kept with its results (results_keep)
                node.remember(app, r.voter, durable=True, complete=True)
        for app, c in old.coords.items():
            if c.closed or not c.role.coordinating:
                continue
            row = Journaled(app, c.spec, c.term, c.role.role.value, c.journal, c.members)
            node.resuming[app] = Resume(node, row)
        return node

    def holders(self) -> set[str]:
        """Apps that some live machine coordinates or keeps a replica of."""
        out: set[str] = set()
        for n in self.nodes.values():
            if n.up:
                out.update(n.coords)
                out.update(n.replicas)
        return out

    def coordinator(
        self, node: SimNode, app: str, spec: AppSpec, role: CoordinatorRole, **kw: Any
    ) -> CoordinatorSide:
        """The coordinator of ``app`` on ``node``: the product's ``AppEngine`` in its shell."""
        from bonjourgrid.sim.coordinator import CoordinatorSide

        return CoordinatorSide(node, app, spec, role, **kw)
