"""The simulation drives the product's engines with the product's messages: every
coordinator is an ``AppEngine``, every replica a ``ReplicaEngine``, every message on the
simulated network a ``bonjourgrid.control.messages`` class. Clean on these seeds; and a
broken commit rule passed to the engine (a ``Quorum`` that acks after 0 copies: a parameter,
no switch in product code) is found on the same seeds."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bonjourgrid.control import messages
from bonjourgrid.engine.app import AppEngine
from bonjourgrid.engine.replica import ReplicaEngine
from bonjourgrid.faulttolerance.quorum import Members
from bonjourgrid.sim.scenario import Crash, Scenario, build, run

SEEDS = (1, 2, 3)


class AcksAtOnce:
    """The broken rule: a result counts as committed before any replica holds it."""

    def durable(self, members: Members, acked: Mapping[str, int], seq: int) -> bool:
        return True


def test_every_part_is_the_products_engine_and_every_message_the_products_class() -> None:
    s = Scenario(seed=4, nodes=60, apps=12, random_partitions=1, crashes=(Crash(3.0, app=0),))
    world, _ = build(s)
    kinds: set[type] = set()
    send = world.net.send

    def spy(src: str, dst: str, msg: object) -> None:
        kinds.add(type(msg))
        send(src, dst, msg)

    world.net.send = spy  # type: ignore[method-assign]
    coordinators, replicas = set(), set()
    while world.clock.now < 20.0:
        world.clock.run(world.clock.now + 0.5)
        for n in world.nodes.values():
            coordinators |= {type(c.engine) for c in n.coords.values()}
            replicas |= {type(r.engine) for r in n.replicas.values()}
    assert coordinators == {AppEngine} and replicas == {ReplicaEngine}
    assert {k.__module__ for k in kinds} == {messages.__name__}
    assert {messages.ReplicaOpen, messages.JournalAppend, messages.Replicas} <= kinds
    assert {messages.Reserve, messages.RunTask, messages.TaskResult, messages.ResultAck} <= kinds


@pytest.mark.parametrize("seed", SEEDS)
def test_the_engine_driven_simulation_finds_no_violation(seed: int) -> None:
    r = run(Scenario(seed=seed, nodes=300, apps=120))
    assert r.violations == () and r.finished + r.lost == 120


@pytest.mark.parametrize("seed", SEEDS)
def test_a_quorum_that_acks_after_zero_copies_is_found_on_the_same_seeds(seed: int) -> None:
    r = run(Scenario(seed=seed, nodes=300, apps=120, quorum=AcksAtOnce()))
    assert any("committed by term" in v or "committed 2 times" in v for v in r.violations)
